package az.imza.portal;

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.AlgorithmParameters;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.CertPath;
import java.security.cert.CertPathValidator;
import java.security.cert.CertPathValidatorException;
import java.security.cert.CertStore;
import java.security.cert.CertificateFactory;
import java.security.cert.CollectionCertStoreParameters;
import java.security.cert.PKIXParameters;
import java.security.cert.PKIXRevocationChecker;
import java.security.cert.TrustAnchor;
import java.security.cert.X509CRL;
import java.security.cert.X509Certificate;
import java.security.interfaces.ECPublicKey;
import java.security.interfaces.RSAPublicKey;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PSSParameterSpec;
import java.time.Clock;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Date;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Verifies the token of an {@code auth.login} (format {@code imza-auth:1}, docs/protocol.md)
 * on the portal's server. Checks, in the order of portal-kit/vectors/SCHEMA.md: the token's
 * shape, its format, the challenge (issued to this session, unused, fresh), the algorithm
 * against the certificate's key, the signature over
 * {@code SHA-256(origin) || SHA-256(challenge)}, a path to a configured anchor, validity at
 * the clock's time, key usage for authentication, and revocation (configured CRLs, optionally
 * OCSP). Immutable and safe to share between request threads.
 */
public final class LoginVerifier {
    public static final String FORMAT = "imza-auth:1";
    /**
     * Bounds a page cannot make the verifier work past (SCHEMA.md): chain members, and the
     * characters of the token's strings (format, certificate, algorithm, signature, chain).
     */
    public static final int MAX_CHAIN = 16;
    public static final int MAX_TOKEN_CHARS = 256 * 1024;
    /**
     * Bounds on the JSON text {@link #verify} parses, before the token's own: twice the
     * token's, so that only text padded with other members or blanks meets it first.
     */
    public static final int MAX_JSON_CHARS = 2 * MAX_TOKEN_CHARS;
    public static final int MAX_TOKEN_DEPTH = 16;

    private final String origin;
    private final List<X509Certificate> anchors;
    private final List<X509CRL> crls;
    private final boolean ocsp;
    private final URI ocspResponder;
    private final boolean requireRevocation;
    private final Clock clock;

    private LoginVerifier(Builder b) {
        this.origin = Objects.requireNonNull(b.origin, "origin");
        if (b.anchors.isEmpty()) {
            throw new IllegalArgumentException("at least one trust anchor is needed");
        }
        this.anchors = List.copyOf(b.anchors);
        this.crls = List.copyOf(b.crls);
        this.ocsp = b.ocsp;
        this.ocspResponder = b.ocspResponder;
        this.requireRevocation = b.requireRevocation;
        this.clock = b.clock;
        if (requireRevocation && crls.isEmpty() && !ocsp) {
            throw new IllegalArgumentException("requireRevocation needs CRLs or OCSP");
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Configuration; only {@link #origin} and at least one anchor are required. */
    public static final class Builder {
        private String origin;
        private final List<X509Certificate> anchors = new ArrayList<>();
        private final List<X509CRL> crls = new ArrayList<>();
        private boolean ocsp;
        private URI ocspResponder;
        private boolean requireRevocation;
        private Clock clock = Clock.systemUTC();

        private Builder() {
        }

        /** The portal's own origin, e.g. {@code https://portal.example.az} (no path, no slash). */
        public Builder origin(String origin) {
            this.origin = origin;
            return this;
        }

        /** The roots (or issuing CAs) the portal trusts for login certificates. */
        public Builder anchors(Collection<X509Certificate> anchors) {
            this.anchors.addAll(anchors);
            return this;
        }

        public Builder anchor(X509Certificate anchor) {
            this.anchors.add(Objects.requireNonNull(anchor));
            return this;
        }

        /** CRLs for offline revocation checks; refresh them by building a new verifier. */
        public Builder crls(Collection<X509CRL> crls) {
            this.crls.addAll(crls);
            return this;
        }

        /** Ask the certificate's OCSP responder (its AIA, or {@link #ocspResponder}) online. */
        public Builder ocsp(boolean enabled) {
            this.ocsp = enabled;
            return this;
        }

        /** Ask this responder instead of the one the certificate names; enables OCSP. */
        public Builder ocspResponder(URI responder) {
            this.ocspResponder = responder;
            this.ocsp = responder != null;
            return this;
        }

        /** Refuse (REVOCATION_UNKNOWN) when neither a CRL nor OCSP gives a status. */
        public Builder requireRevocation(boolean required) {
            this.requireRevocation = required;
            return this;
        }

        /** The time checks run at; tests and test vectors inject a fixed clock. */
        public Builder clock(Clock clock) {
            this.clock = Objects.requireNonNull(clock);
            return this;
        }

        public LoginVerifier build() {
            return new LoginVerifier(this);
        }
    }

    /** Algorithms of docs/protocol.md (JOSE names, RFC 7518). */
    private enum Algorithm {
        RS256("SHA256withRSA", null, 0), RS384("SHA384withRSA", null, 0),
        RS512("SHA512withRSA", null, 0),
        PS256("SHA-256", null, 32), PS384("SHA-384", null, 48), PS512("SHA-512", null, 64),
        ES256("SHA256withECDSAinP1363Format", "secp256r1", 0),
        ES384("SHA384withECDSAinP1363Format", "secp384r1", 0),
        ES512("SHA512withECDSAinP1363Format", "secp521r1", 0);

        final String jca; // the JCA signature name, or for PS* the hash
        final String curve;
        final int saltLength;

        Algorithm(String jca, String curve, int saltLength) {
            this.jca = jca;
            this.curve = curve;
            this.saltLength = saltLength;
        }

        boolean pss() {
            return saltLength > 0;
        }

        static Algorithm of(String label) {
            for (Algorithm a : values()) {
                if (a.name().equals(label)) {
                    return a;
                }
            }
            return null;
        }
    }

    /** The token as the page posted it: JSON text (the {@code token} object of auth.login). */
    public VerifiedLogin verify(String tokenJson, String challenge, ChallengeBackend store,
            String session) throws LoginError {
        Object token;
        try {
            token = Json.parse(tokenJson, MAX_JSON_CHARS, MAX_TOKEN_DEPTH);
        } catch (Json.ParseException e) {
            throw new LoginError(LoginError.Code.MALFORMED, "the token is not JSON: "
                    + e.getMessage());
        }
        return verifyValue(token, challenge, store, session);
    }

    /**
     * The token as an already parsed JSON value: a {@code Map} of {@code String}s and a
     * {@code List} of {@code String}s (as {@link Json} or a framework's JSON mapper gives it);
     * anything else is MALFORMED.
     */
    public VerifiedLogin verifyValue(Object token, String challenge, ChallengeBackend store,
            String session) throws LoginError {
        Objects.requireNonNull(store, "store");
        Parsed t = parse(token);
        if (!FORMAT.equals(t.format)) {
            throw new LoginError(LoginError.Code.UNSUPPORTED_FORMAT,
                    "the token's format is not " + FORMAT);
        }
        byte[] challengeBytes = challenge == null ? null : Codec.base64url(challenge);
        if (challengeBytes == null) {
            throw new LoginError(LoginError.Code.CHALLENGE_UNKNOWN,
                    "the challenge is not base64url, so it was not issued here");
        }
        store.consume(challenge, session);
        Algorithm algorithm = algorithmFor(t.algorithm, t.certificate.getPublicKey());
        checkSignature(algorithm, t.certificate.getPublicKey(), t.signature, challengeBytes);
        List<X509Certificate> path = TrustPath.find(t.certificate, t.chain, anchors);
        if (path == null) {
            throw new LoginError(LoginError.Code.CERT_UNTRUSTED,
                    "no path from " + name(t.certificate) + " to a trusted root");
        }
        Instant now = clock.instant();
        checkStructure(path);
        checkValidity(path, now);
        checkAuthenticationUsage(t.certificate);
        checkRevocation(path, now);
        return new VerifiedLogin(t.certificate, path);
    }

    // --- 1. shape -----------------------------------------------------------------------

    private static final class Parsed {
        String format;
        X509Certificate certificate;
        List<X509Certificate> chain = new ArrayList<>();
        String algorithm;
        byte[] signature;
    }

    private static Parsed parse(Object token) throws LoginError {
        if (!(token instanceof Map)) {
            throw malformed("the token is not a JSON object");
        }
        Map<?, ?> map = (Map<?, ?>) token;
        Parsed t = new Parsed();
        t.format = string(map, "format");
        String certificate = string(map, "certificate");
        t.algorithm = string(map, "algorithm");
        String signature = string(map, "signature");
        List<String> chain = new ArrayList<>();
        if (map.containsKey("chain")) {
            Object value = map.get("chain");
            if (!(value instanceof List)) {
                throw malformed("chain is not an array");
            }
            for (Object item : (List<?>) value) {
                if (!(item instanceof String)) {
                    throw malformed("chain holds something other than strings");
                }
                chain.add((String) item);
            }
        }
        if (chain.size() > MAX_CHAIN) {
            throw malformed("chain has more than " + MAX_CHAIN + " certificates");
        }
        long chars = (long) t.format.length() + certificate.length() + t.algorithm.length()
                + signature.length();
        for (String item : chain) {
            chars += item.length();
        }
        if (chars > MAX_TOKEN_CHARS) {
            throw malformed("the token is larger than " + MAX_TOKEN_CHARS + " characters");
        }
        t.certificate = certificate(certificate, "certificate");
        for (int i = 0; i < chain.size(); i++) {
            t.chain.add(certificate(chain.get(i), "chain[" + i + "]"));
        }
        t.signature = Codec.base64(signature);
        if (t.signature == null) {
            throw malformed("signature is not base64");
        }
        return t;
    }

    private static String string(Map<?, ?> map, String field) throws LoginError {
        Object value = map.get(field);
        if (!(value instanceof String)) {
            throw malformed(field + " is missing or not a string");
        }
        return (String) value;
    }

    private static X509Certificate certificate(String base64, String field) throws LoginError {
        byte[] der = Codec.base64(base64);
        if (der == null) {
            throw malformed(field + " is not base64");
        }
        X509Certificate cert = Codec.certificate(der);
        if (cert == null) {
            throw malformed(field + " is not a DER X.509 certificate");
        }
        return cert;
    }

    private static LoginError malformed(String message) {
        return new LoginError(LoginError.Code.MALFORMED, message);
    }

    // --- 4. algorithm -------------------------------------------------------------------

    private static Algorithm algorithmFor(String label, PublicKey key) throws LoginError {
        Algorithm algorithm = Algorithm.of(label);
        if (algorithm == null) {
            throw new LoginError(LoginError.Code.ALGORITHM_MISMATCH,
                    "unknown algorithm label");
        }
        boolean fits;
        if (algorithm.curve == null) {
            fits = key instanceof RSAPublicKey;
        } else {
            fits = key instanceof ECPublicKey
                    && sameCurve(((ECPublicKey) key).getParams(), algorithm.curve);
        }
        if (!fits) {
            throw new LoginError(LoginError.Code.ALGORITHM_MISMATCH,
                    algorithm + " does not fit the certificate's " + key.getAlgorithm() + " key");
        }
        return algorithm;
    }

    /** As in JOSE (RFC 7518 section 3.4): the curve itself, not just one of its size. */
    private static boolean sameCurve(ECParameterSpec params, String curveName) {
        try {
            AlgorithmParameters named = AlgorithmParameters.getInstance("EC");
            named.init(new ECGenParameterSpec(curveName));
            ECParameterSpec want = named.getParameterSpec(ECParameterSpec.class);
            return params.getCurve().getField().getFieldSize()
                    == want.getCurve().getField().getFieldSize()
                    && params.getCurve().equals(want.getCurve())
                    && params.getGenerator().equals(want.getGenerator())
                    && params.getOrder().equals(want.getOrder())
                    && params.getCofactor() == want.getCofactor();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK lacks the curve " + curveName, e);
        }
    }

    // --- 5. signature -------------------------------------------------------------------

    private void checkSignature(Algorithm algorithm, PublicKey key, byte[] signature,
            byte[] challengeBytes) throws LoginError {
        if (algorithm.curve != null) {
            int width = (((ECPublicKey) key).getParams().getCurve().getField().getFieldSize() + 7)
                    / 8;
            if (signature.length != 2 * width) {
                throw new LoginError(LoginError.Code.SIGNATURE_INVALID,
                        "an " + algorithm + " signature is " + 2 * width + " bytes of r||s");
            }
        }
        boolean valid;
        try {
            Signature verifier;
            if (algorithm.pss()) {
                verifier = Signature.getInstance("RSASSA-PSS");
                verifier.setParameter(new PSSParameterSpec(algorithm.jca, "MGF1",
                        new MGF1ParameterSpec(algorithm.jca), algorithm.saltLength, 1));
            } else {
                verifier = Signature.getInstance(algorithm.jca);
            }
            verifier.initVerify(key);
            verifier.update(signedMessage(origin, challengeBytes));
            valid = verifier.verify(signature);
        } catch (GeneralSecurityException | RuntimeException e) {
            valid = false; // a signature the provider cannot even decode does not verify
        }
        if (!valid) {
            throw new LoginError(LoginError.Code.SIGNATURE_INVALID,
                    "the signature does not verify for this origin and challenge");
        }
    }

    /** The 64 bytes the agent signs: SHA-256(origin) || SHA-256(decoded challenge). */
    static byte[] signedMessage(String origin, byte[] challenge) {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            byte[] message = new byte[64];
            System.arraycopy(sha.digest(origin.getBytes(StandardCharsets.UTF_8)), 0, message, 0,
                    32);
            System.arraycopy(sha.digest(challenge), 0, message, 32, 32);
            return message;
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("SHA-256", e);
        }
    }

    // --- 6.-9. certificate --------------------------------------------------------------

    /**
     * The JDK's PKIX rules over the path found (basic constraints, CA key usage, name
     * constraints, critical extensions), without revocation, at a time every certificate on
     * the path is valid: a structural fault is CERT_UNTRUSTED and comes before validity.
     */
    private void checkStructure(List<X509Certificate> path) throws LoginError {
        if (path.size() < 2) {
            return; // the certificate is itself an anchor
        }
        Date latestStart = null;
        Date earliestEnd = null;
        for (X509Certificate cert : path) {
            if (latestStart == null || cert.getNotBefore().after(latestStart)) {
                latestStart = cert.getNotBefore();
            }
            if (earliestEnd == null || cert.getNotAfter().before(earliestEnd)) {
                earliestEnd = cert.getNotAfter();
            }
        }
        if (latestStart.after(earliestEnd)) {
            return; // no common time: the validity check refuses the path anyway
        }
        try {
            validator().validate(certPath(path), parameters(path, latestStart));
        } catch (CertPathValidatorException e) {
            throw new LoginError(LoginError.Code.CERT_UNTRUSTED,
                    "the path to the trusted root is not valid: " + e.getMessage(), e);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("PKIX validation could not run", e);
        }
    }

    /** The end entity first, then up the path to the anchor. */
    private static void checkValidity(List<X509Certificate> path, Instant now)
            throws LoginError {
        Date at = Date.from(now);
        for (X509Certificate cert : path) {
            if (at.before(cert.getNotBefore())) {
                throw new LoginError(LoginError.Code.CERT_NOT_YET_VALID,
                        name(cert) + " is valid only from " + cert.getNotBefore().toInstant());
            }
            if (at.after(cert.getNotAfter())) {
                throw new LoginError(LoginError.Code.CERT_EXPIRED,
                        name(cert) + " expired on " + cert.getNotAfter().toInstant());
            }
        }
    }

    private static final String CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

    /**
     * keyUsage, when present, must allow digitalSignature; extendedKeyUsage, when present,
     * must list clientAuth (absent extensions do not restrict, RFC 5280 4.2.1.3 / 4.2.1.12).
     */
    private static void checkAuthenticationUsage(X509Certificate cert) throws LoginError {
        boolean[] usage = cert.getKeyUsage();
        if (usage != null && !usage[0]) {
            throw new LoginError(LoginError.Code.CERT_NOT_FOR_AUTH,
                    "the certificate's key usage does not allow digitalSignature "
                            + "(a signing certificate?)");
        }
        List<String> extended;
        try {
            extended = cert.getExtendedKeyUsage();
        } catch (java.security.cert.CertificateParsingException e) {
            throw new LoginError(LoginError.Code.CERT_NOT_FOR_AUTH,
                    "the certificate's extended key usage does not parse", e);
        }
        if (extended != null && !extended.contains(CLIENT_AUTH)) {
            throw new LoginError(LoginError.Code.CERT_NOT_FOR_AUTH,
                    "the certificate's extended key usage lacks clientAuth");
        }
    }

    /**
     * A configured CRL that lists any certificate on the path (an intermediate CA too) is
     * CERT_REVOKED. Then the end entity's status from the configured CRLs, then (when
     * enabled) OCSP, each through the JDK's PKIXRevocationChecker. Revoked by either is
     * CERT_REVOKED; a status neither can give (no current CRL of the issuer, no responder
     * named, responder down, an answer that cannot be trusted) lets the login through unless
     * the portal requires one: what it may require is the end entity's status.
     */
    private void checkRevocation(List<X509Certificate> path, Instant now) throws LoginError {
        if (crls.isEmpty() && !ocsp) {
            return;
        }
        boolean known = path.size() >= 2; // a pinned certificate has no issuer to ask
        if (known) {
            boolean fromCrls = !crls.isEmpty() && crlStatus(path, now);
            known = fromCrls | (ocsp && status(path, now, false));
        }
        if (!known && requireRevocation) {
            throw new LoginError(LoginError.Code.REVOCATION_UNKNOWN,
                    "no revocation status could be had for " + name(path.get(0)));
        }
    }

    /**
     * The configured CRLs' answer: throws CERT_REVOKED when one of an issuer's lists a
     * certificate on the path, even one past its nextUpdate (revocations are final; the
     * Python and Node.js kits agree). The JDK's PKIXRevocationChecker is asked only with a
     * current CRL of the end entity's issuer at hand: without one it would fetch the CRL
     * the certificate names (CRL distribution points) over the network, which an offline
     * configuration must not do.
     */
    private boolean crlStatus(List<X509Certificate> path, Instant now) throws LoginError {
        boolean current = false;
        for (int i = 0; i + 1 < path.size(); i++) {
            boolean currentHere = listedOrCurrent(path.get(i), path.get(i + 1), now);
            current |= i == 0 && currentHere;
        }
        return current && status(path, now, true);
    }

    /**
     * Throws CERT_REVOKED when a CRL of {@code issuer} lists {@code cert}; else whether one
     * of them is current at {@code now} (thisUpdate <= now <= nextUpdate; without a
     * nextUpdate, never), so that its silence means "not revoked".
     */
    private boolean listedOrCurrent(X509Certificate cert, X509Certificate issuer, Instant now)
            throws LoginError {
        Date at = Date.from(now);
        boolean current = false;
        for (X509CRL crl : crls) {
            if (!crl.getIssuerX500Principal().equals(issuer.getSubjectX500Principal())) {
                continue;
            }
            try {
                crl.verify(issuer.getPublicKey());
            } catch (GeneralSecurityException | RuntimeException e) {
                continue; // not the issuer's CRL
            }
            if (crl.getRevokedCertificate(cert) != null) {
                throw new LoginError(LoginError.Code.CERT_REVOKED, name(cert)
                        + " is revoked (its issuer's CRL lists it)");
            }
            current |= !at.before(crl.getThisUpdate())
                    && crl.getNextUpdate() != null && !at.after(crl.getNextUpdate());
        }
        return current;
    }

    /** True when the CRLs (or OCSP) say good, false when they say nothing; throws revoked. */
    private boolean status(List<X509Certificate> path, Instant now, boolean fromCrls)
            throws LoginError {
        try {
            CertPathValidator validator = validator();
            PKIXParameters params = parameters(path, Date.from(now));
            PKIXRevocationChecker checker =
                    (PKIXRevocationChecker) validator.getRevocationChecker();
            // One source per pass, so each answers for itself: CRLs alone, then OCSP alone.
            Set<PKIXRevocationChecker.Option> options = EnumSet.of(
                    PKIXRevocationChecker.Option.ONLY_END_ENTITY,
                    PKIXRevocationChecker.Option.NO_FALLBACK);
            if (fromCrls) {
                options.add(PKIXRevocationChecker.Option.PREFER_CRLS);
                params.addCertStore(CertStore.getInstance("Collection",
                        new CollectionCertStoreParameters(crls)));
            } else if (ocspResponder != null) {
                checker.setOcspResponder(ocspResponder);
            }
            checker.setOptions(options);
            params.setRevocationEnabled(true);
            params.addCertPathChecker(checker);
            validator.validate(certPath(path), params);
            return true;
        } catch (CertPathValidatorException e) {
            if (e.getReason() == CertPathValidatorException.BasicReason.REVOKED) {
                throw new LoginError(LoginError.Code.CERT_REVOKED,
                        name(path.get(0)) + " is revoked", e);
            }
            // The path's structure and validity passed above, so what failed is the status.
            return false;
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("PKIX validation could not run", e);
        }
    }

    private static CertPathValidator validator() throws GeneralSecurityException {
        return CertPathValidator.getInstance("PKIX");
    }

    /** The path without its anchor, end entity first, as CertPathValidator wants it. */
    private static CertPath certPath(List<X509Certificate> path) throws GeneralSecurityException {
        return CertificateFactory.getInstance("X.509")
                .generateCertPath(path.subList(0, path.size() - 1));
    }

    private static PKIXParameters parameters(List<X509Certificate> path, Date date)
            throws GeneralSecurityException {
        PKIXParameters params = new PKIXParameters(
                Set.of(new TrustAnchor(path.get(path.size() - 1), null)));
        params.setDate(date);
        params.setRevocationEnabled(false);
        return params;
    }

    private static String name(X509Certificate cert) {
        return cert.getSubjectX500Principal().getName();
    }
}
