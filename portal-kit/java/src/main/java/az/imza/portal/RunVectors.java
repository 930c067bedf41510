package az.imza.portal;

import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.X509CRL;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs a login-token vectors file (portal-kit/vectors/SCHEMA.md) through {@link LoginVerifier}
 * and prints {@code {"results": [...]}} on stdout, in the file's order. Exit status 0 whatever
 * the outcomes; 2 when the file itself cannot be read.
 *
 * <pre>java -cp CLASSES az.imza.portal.RunVectors [--ocsp] [--ocsp-responder URL]
 *     [--require-revocation] FILE</pre>
 *
 * The options are beyond SCHEMA.md (the vectors use offline CRLs only): the kit's tests use
 * them to run files of fresh tokens against a live OCSP responder. A vector's own
 * {@code requireRevocation} (SCHEMA.md) requires revocation status for it whatever the
 * option says.
 */
public final class RunVectors {
    static final String FORMAT = "imza-login-vectors:1";
    private static final int MAX_FILE_CHARS = 64 * 1024 * 1024;
    private static final int MAX_DEPTH = 64;
    private static final String SESSION = "vectors";

    private RunVectors() {
    }

    /** What a file cannot be run for. */
    static final class BadFile extends Exception {
        private static final long serialVersionUID = 1L;

        BadFile(String message) {
            super(message);
        }
    }

    public static void main(String[] args) {
        boolean ocsp = false;
        boolean require = false;
        URI responder = null;
        String file = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--ocsp":
                    ocsp = true;
                    break;
                case "--require-revocation":
                    require = true;
                    break;
                case "--ocsp-responder":
                    if (i + 1 == args.length) {
                        usage();
                    }
                    responder = URI.create(args[++i]);
                    break;
                default:
                    if (file != null || args[i].startsWith("--")) {
                        usage();
                    }
                    file = args[i];
            }
        }
        if (file == null) {
            usage();
        }
        String output;
        try {
            String text = Files.readString(Path.of(file), StandardCharsets.UTF_8);
            output = Json.write(run(text, ocsp, responder, require));
        } catch (IOException | Json.ParseException | BadFile e) {
            System.err.println("cannot read " + file + ": " + e.getMessage());
            System.exit(2);
            return;
        }
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        out.println(output);
    }

    private static void usage() {
        System.err.println("usage: RunVectors [--ocsp] [--ocsp-responder URL] "
                + "[--require-revocation] FILE");
        System.exit(2);
    }

    static Map<String, Object> run(String text, boolean ocsp, URI responder, boolean require)
            throws Json.ParseException, BadFile {
        Map<String, Object> file = object(Json.parse(text, MAX_FILE_CHARS, MAX_DEPTH), "file");
        if (!FORMAT.equals(file.get("format"))) {
            throw new BadFile("format is not " + FORMAT);
        }
        List<X509Certificate> anchors = new ArrayList<>();
        for (String item : strings(file.get("anchors"), "anchors")) {
            byte[] der = Codec.base64(item);
            X509Certificate cert = der == null ? null : Codec.certificate(der);
            if (cert == null) {
                throw new BadFile("an anchor is not a base64 DER certificate");
            }
            anchors.add(cert);
        }
        List<X509CRL> crls = new ArrayList<>();
        if (file.containsKey("crls")) {
            for (String item : strings(file.get("crls"), "crls")) {
                byte[] der = Codec.base64(item);
                X509CRL crl = der == null ? null : Codec.crl(der);
                if (crl == null) {
                    throw new BadFile("a CRL is not base64 DER");
                }
                crls.add(crl);
            }
        }
        Duration lifetime = ChallengeStore.DEFAULT_LIFETIME;
        Object seconds = file.get("challengeLifetimeSeconds");
        if (seconds instanceof java.math.BigDecimal) {
            lifetime = Duration.ofMillis(((java.math.BigDecimal) seconds)
                    .movePointRight(3).longValueExact());
        }
        Object vectors = file.get("vectors");
        if (!(vectors instanceof List)) {
            throw new BadFile("vectors is not an array");
        }
        List<Object> results = new ArrayList<>();
        for (Object item : (List<?>) vectors) {
            Map<String, Object> vector = object(item, "a vector");
            results.add(runOne(vector, anchors, crls, lifetime, ocsp, responder, require));
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("results", results);
        return out;
    }

    private static Map<String, Object> runOne(Map<String, Object> vector,
            List<X509Certificate> anchors, List<X509CRL> crls, Duration lifetime, boolean ocsp,
            URI responder, boolean require) throws BadFile {
        String name = text(vector, "name");
        Clock clock = Clock.fixed(instant(text(vector, "now")), ZoneOffset.UTC);
        String challenge = text(vector, "challenge");
        ChallengeStore store = new ChallengeStore(clock, lifetime);
        Object issuedAt = vector.get("challengeIssuedAt");
        if (issuedAt instanceof String) {
            store.register(challenge, SESSION, instant((String) issuedAt),
                    Boolean.TRUE.equals(vector.get("challengeUsed")));
        } else if (issuedAt != null && issuedAt != Json.NULL) {
            throw new BadFile(name + ": challengeIssuedAt is neither a time nor null");
        }
        LoginVerifier.Builder builder = LoginVerifier.builder()
                .origin(text(vector, "origin")).anchors(anchors).crls(crls).clock(clock)
                .requireRevocation(require || Boolean.TRUE.equals(vector.get("requireRevocation")))
                .ocsp(ocsp);
        if (responder != null) {
            builder.ocspResponder(responder);
        }
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("name", name);
        try {
            VerifiedLogin login = builder.build().verifyValue(vector.get("token"), challenge,
                    store, SESSION);
            result.put("valid", true);
            result.put("error", null);
            result.put("certificateSha256", login.certificateSha256());
        } catch (LoginError e) {
            result.put("valid", false);
            result.put("error", e.code().name());
            result.put("certificateSha256", null);
        } catch (RuntimeException e) {
            // A bug of ours, not an answer: say so in the output and carry on with the file.
            e.printStackTrace();
            result.put("valid", false);
            result.put("error", "INTERNAL: " + e);
            result.put("certificateSha256", null);
        }
        return result;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> object(Object value, String what) throws BadFile {
        if (!(value instanceof Map)) {
            throw new BadFile(what + " is not an object");
        }
        return (Map<String, Object>) value;
    }

    private static List<String> strings(Object value, String what) throws BadFile {
        if (!(value instanceof List)) {
            throw new BadFile(what + " is not an array");
        }
        List<String> out = new ArrayList<>();
        for (Object item : (List<?>) value) {
            if (!(item instanceof String)) {
                throw new BadFile(what + " holds something other than strings");
            }
            out.add((String) item);
        }
        return out;
    }

    private static String text(Map<String, Object> vector, String field) throws BadFile {
        Object value = vector.get(field);
        if (!(value instanceof String)) {
            throw new BadFile("a vector's " + field + " is not a string");
        }
        return (String) value;
    }

    /** RFC 3339 with an offset ("Z" or "+04:00"). */
    private static Instant instant(String text) throws BadFile {
        try {
            return OffsetDateTime.parse(text).toInstant();
        } catch (DateTimeParseException e) {
            throw new BadFile("not an RFC 3339 time: " + text);
        }
    }
}
