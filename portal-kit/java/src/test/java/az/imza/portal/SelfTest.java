package az.imza.portal;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.X509Certificate;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Checks of the Java kit beyond what a vectors file can say: the JSON reader's strictness,
 * the challenge store (single use, sessions, expiry, threads) and the verifier's API. Uses
 * real tokens and certificates from the committed vectors file. No test framework: prints
 * {@code PASS name} or {@code FAIL name: why} per check, exit status 1 when any failed.
 *
 * <pre>java -cp CLASSES az.imza.portal.SelfTest portal-kit/vectors/login-tokens.json</pre>
 */
public final class SelfTest {
    private static final String SESSION = "session-a";
    private static int failures;

    private SelfTest() {
    }

    /** A clock a test moves by hand. */
    static final class MovingClock extends Clock {
        volatile Instant now;

        MovingClock(Instant now) {
            this.now = now;
        }

        @Override
        public ZoneId getZone() {
            return ZoneOffset.UTC;
        }

        @Override
        public Clock withZone(ZoneId zone) {
            return this;
        }

        @Override
        public Instant instant() {
            return now;
        }
    }

    interface Check {
        void run() throws Exception;
    }

    private static void check(String name, Check body) {
        try {
            body.run();
            System.out.println("PASS " + name);
        } catch (Throwable e) {
            failures++;
            System.out.println("FAIL " + name + ": " + e);
        }
    }

    private static void require(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
    }

    private static LoginError.Code code(Check body) throws Exception {
        try {
            body.run();
        } catch (LoginError e) {
            return e.code();
        }
        return null;
    }

    private static boolean refused(String json) {
        try {
            Json.parse(json, 1000, 4);
            return false;
        } catch (Json.ParseException e) {
            return true;
        }
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        Map<String, Object> file = (Map<String, Object>) Json.parse(
                Files.readString(Path.of(args[0]), StandardCharsets.UTF_8), 64 << 20, 64);
        Map<String, Map<String, Object>> vectors = new HashMap<>();
        for (Object v : (List<Object>) file.get("vectors")) {
            Map<String, Object> vector = (Map<String, Object>) v;
            vectors.put((String) vector.get("name"), vector);
        }
        List<X509Certificate> anchors = new ArrayList<>();
        for (Object a : (List<Object>) file.get("anchors")) {
            anchors.add(Codec.certificate(Codec.base64((String) a)));
        }
        String origin = (String) file.get("origin");
        Map<String, Object> valid = vectors.get("es256-p256-valid");
        Map<String, Object> wrongOrigin = vectors.get("wrong-origin");
        Instant now = Instant.parse((String) valid.get("now"));
        Clock fixed = Clock.fixed(now, ZoneOffset.UTC);
        LoginVerifier verifier = LoginVerifier.builder().origin(origin).anchors(anchors)
                .clock(fixed).build();
        String tokenJson = Json.write(valid.get("token"));
        String challenge = (String) valid.get("challenge");
        String expectedSha = (String) ((Map<String, Object>) valid.get("expect"))
                .get("certificateSha256");

        check("json-accepts-rfc8259", () -> {
            Object v = Json.parse(" {\"a\":[1,-0.5e+3,true,false,null],"
                    + "\"b\":\"\\u00e7\\ud83d\\ude00\\/\"} ", 1000, 4);
            Map<String, Object> m = (Map<String, Object>) v;
            require(((List<Object>) m.get("a")).get(4) == Json.NULL, "null member");
            require("\u00e7\ud83d\ude00/".equals(m.get("b")), "escapes decoded");
            require(Json.write(v).equals("{\"a\":[1,-5E+2,true,false,null],"
                    + "\"b\":\"\u00e7\\ud83d\\ude00/\"}"), "written back: " + Json.write(v));
        });
        check("json-refuses-what-rfc8259-does-not-allow", () -> {
            String[] bad = {"{\"a\":1,}", "[1,]", "{'a':1}", "{\"a\":1}x", "01", "-", "1.", ".5",
                "NaN", "\"tab\there\"", "\"\\x\"", "\"\\u12\"", "/*c*/1", "\ufeff{}", "{\"a\" 1}",
                "[1 2]", "", "tru", "\"open"};
            for (String text : bad) {
                require(refused(text), "accepted " + text);
            }
        });
        check("json-refuses-duplicate-members", () ->
                require(refused("{\"certificate\":\"a\",\"certificate\":\"b\"}"), "duplicate"));
        check("json-bounds-depth-and-size", () -> {
            require(!refused("[[[[1]]]]"), "depth 4 is allowed");
            require(refused("[[[[[1]]]]]"), "depth 5 refused");
            require(refused("{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}"), "object depth 5 refused");
            require(refused("\"" + "x".repeat(1000) + "\""), "over the size");
        });

        check("challenge-is-32-random-bytes-base64url", () -> {
            ChallengeStore store = new ChallengeStore(fixed);
            String a = store.issue(SESSION);
            String b = store.issue(SESSION);
            require(a.matches("[A-Za-z0-9_-]{43}"), "43 base64url characters: " + a);
            require(!a.equals(b), "two issues differ");
            require(Codec.base64url(a).length == 32, "32 bytes");
        });
        check("challenge-single-use", () -> {
            ChallengeStore store = new ChallengeStore(fixed);
            String c = store.issue(SESSION);
            store.consume(c, SESSION);
            require(code(() -> store.consume(c, SESSION)) == LoginError.Code.CHALLENGE_USED,
                    "second use is a replay");
            require(code(() -> store.consume(c + "=", SESSION)) == LoginError.Code.CHALLENGE_USED,
                    "padding makes no other challenge");
        });
        check("challenge-bound-to-its-session", () -> {
            ChallengeStore store = new ChallengeStore(fixed);
            String c = store.issue(SESSION);
            require(code(() -> store.consume(c, "session-b")) == LoginError.Code.CHALLENGE_UNKNOWN,
                    "another session's challenge is unknown");
            store.consume(c, SESSION); // and that did not use it up
            require(code(() -> store.consume("never-issued-" + c, SESSION))
                    == LoginError.Code.CHALLENGE_UNKNOWN, "never issued");
        });
        check("challenge-expires-after-its-lifetime-and-is-consumed", () -> {
            MovingClock clock = new MovingClock(now);
            ChallengeStore store = new ChallengeStore(clock, Duration.ofSeconds(300));
            String fresh = store.issue(SESSION);
            String stale = store.issue(SESSION);
            clock.now = now.plusSeconds(300);
            store.consume(fresh, SESSION); // exactly the lifetime is still fresh
            clock.now = now.plusSeconds(301);
            require(code(() -> store.consume(stale, SESSION)) == LoginError.Code.CHALLENGE_EXPIRED,
                    "older than the lifetime");
            require(code(() -> store.consume(stale, SESSION)) == LoginError.Code.CHALLENGE_USED,
                    "an expired challenge is consumed too");
            clock.now = now.plusSeconds(601); // more than two lifetimes: forgotten
            store.issue(SESSION);
            require(code(() -> store.consume(stale, SESSION)) == LoginError.Code.CHALLENGE_UNKNOWN,
                    "old entries are purged");
        });
        check("challenge-one-winner-among-threads", () -> {
            ChallengeStore store = new ChallengeStore(fixed);
            String c = store.issue(SESSION);
            AtomicInteger won = new AtomicInteger();
            AtomicInteger replays = new AtomicInteger();
            race(32, () -> {
                LoginError.Code got = code(() -> store.consume(c, SESSION));
                if (got == null) {
                    won.incrementAndGet();
                } else if (got == LoginError.Code.CHALLENGE_USED) {
                    replays.incrementAndGet();
                } else {
                    throw new AssertionError(got);
                }
                return null;
            });
            require(won.get() == 1 && replays.get() == 31, won + " won, " + replays + " replays");
        });

        check("verify-json-text-gives-the-certificate", () -> {
            ChallengeStore store = new ChallengeStore(fixed);
            store.register(challenge, SESSION, now.minusSeconds(30), false);
            VerifiedLogin login = verifier.verify(tokenJson, challenge, store, SESSION);
            require(login.certificateSha256().equals(expectedSha), "sha256 " + login);
            require(login.subject().contains("CN="), "subject " + login.subject());
            require(login.issuer().equals(login.path().get(1).getSubjectX500Principal().getName()),
                    "issuer is the next on the path");
            require(anchors.contains(login.path().get(login.path().size() - 1)),
                    "the path ends at an anchor");
            require(login.serialNumber().equals(login.certificate().getSerialNumber()), "serial");
        });
        check("verify-a-mappers-hashmap", () -> {
            ChallengeStore store = new ChallengeStore(fixed);
            store.register(challenge, SESSION, now, false);
            Map<String, Object> token = new HashMap<>((Map<String, Object>) valid.get("token"));
            require(verifier.verifyValue(token, challenge, store, SESSION).certificateSha256()
                    .equals(expectedSha), "same login");
        });
        check("verify-json-text-that-is-not-a-token", () -> {
            String[] bad = {"{", "", "null", "\"" + tokenJson.replace("\"", "\\\"") + "\"",
                tokenJson.replaceFirst("\\{", "{\"format\":\"imza-auth:1\","),
                "[".repeat(100) + "]".repeat(100)};
            for (String text : bad) {
                ChallengeStore store = new ChallengeStore(fixed);
                store.register(challenge, SESSION, now, false);
                require(code(() -> verifier.verify(text, challenge, store, SESSION))
                        == LoginError.Code.MALFORMED, "not MALFORMED: " + text);
                store.consume(challenge, SESSION); // a malformed token did not consume it
            }
        });
        check("verify-consumes-the-challenge-whatever-the-outcome", () -> {
            ChallengeStore store = new ChallengeStore(fixed);
            store.register(challenge, SESSION, now, false);
            Map<String, Object> other = (Map<String, Object>) wrongOrigin.get("token");
            require(code(() -> verifier.verifyValue(other, challenge, store, SESSION))
                    == LoginError.Code.SIGNATURE_INVALID, "another origin's token");
            require(code(() -> verifier.verify(tokenJson, challenge, store, SESSION))
                    == LoginError.Code.CHALLENGE_USED, "the good token now comes too late");
        });
        check("verify-the-token-of-another-origin", () -> {
            LoginVerifier elsewhere = LoginVerifier.builder().origin("https://evil.example")
                    .anchors(anchors).clock(fixed).build();
            ChallengeStore store = new ChallengeStore(fixed);
            store.register(challenge, SESSION, now, false);
            require(code(() -> elsewhere.verify(tokenJson, challenge, store, SESSION))
                    == LoginError.Code.SIGNATURE_INVALID, "replayed on another origin");
        });
        check("verify-at-a-time-the-certificate-is-expired", () -> {
            Clock later = Clock.fixed(now.plus(Duration.ofDays(365 * 30)), ZoneOffset.UTC);
            LoginVerifier future = LoginVerifier.builder().origin(origin).anchors(anchors)
                    .clock(later).build();
            ChallengeStore store = new ChallengeStore(later);
            store.register(challenge, SESSION, later.instant(), false);
            require(code(() -> future.verify(tokenJson, challenge, store, SESSION))
                    == LoginError.Code.CERT_EXPIRED, "thirty years on");
        });
        check("verify-trusts-the-configured-anchors-only", () -> {
            Map<String, Object> rsa = (Map<String, Object>) vectors.get("rs256-rsa2048-valid")
                    .get("token");
            X509Certificate leaf = Codec.certificate(Codec.base64((String)
                    ((Map<String, Object>) valid.get("token")).get("certificate")));
            X509Certificate stranger = Codec.certificate(Codec.base64(
                    (String) rsa.get("certificate")));
            LoginVerifier wrongRoot = LoginVerifier.builder().origin(origin).anchor(stranger)
                    .clock(fixed).build();
            ChallengeStore store = new ChallengeStore(fixed);
            store.register(challenge, SESSION, now, false);
            require(code(() -> wrongRoot.verify(tokenJson, challenge, store, SESSION))
                    == LoginError.Code.CERT_UNTRUSTED, "another anchor");
            // The end entity itself configured as an anchor is trusted as configured.
            LoginVerifier pinned = LoginVerifier.builder().origin(origin).anchor(leaf)
                    .clock(fixed).build();
            store.register(challenge, SESSION, now, false);
            require(code(() -> pinned.verify(tokenJson, challenge, store, SESSION)) == null,
                    "a pinned certificate");
        });
        check("verify-threads-share-one-verifier", () -> {
            ChallengeStore store = new ChallengeStore(fixed);
            store.register(challenge, SESSION, now, false);
            AtomicInteger logins = new AtomicInteger();
            race(8, () -> {
                LoginError.Code got = code(() -> verifier.verify(tokenJson, challenge, store,
                        SESSION));
                if (got == null) {
                    logins.incrementAndGet();
                } else if (got != LoginError.Code.CHALLENGE_USED) {
                    throw new AssertionError(got);
                }
                return null;
            });
            require(logins.get() == 1, logins + " logins from one challenge");
        });
        check("builder-refuses-what-cannot-work", () -> {
            boolean noAnchor = false;
            boolean requireNothing = false;
            try {
                LoginVerifier.builder().origin(origin).build();
            } catch (IllegalArgumentException e) {
                noAnchor = true;
            }
            try {
                LoginVerifier.builder().origin(origin).anchors(anchors).requireRevocation(true)
                        .build();
            } catch (IllegalArgumentException e) {
                requireNothing = true;
            }
            require(noAnchor && requireNothing, "no anchor / revocation from nothing");
        });
        check("error-codes-are-the-schemas", () -> {
            String schema = Files.readString(Path.of(args[0]).resolveSibling("SCHEMA.md"),
                    StandardCharsets.UTF_8);
            for (LoginError.Code c : LoginError.Code.values()) {
                require(schema.contains("`" + c.name() + "`"), c + " is not in SCHEMA.md");
            }
            require(new LoginError(LoginError.Code.CERT_REVOKED, "revoked").getMessage()
                    .equals("CERT_REVOKED: revoked"), "message");
        });
        System.out.println(failures == 0 ? "ALL PASSED" : failures + " FAILED");
        System.exit(failures == 0 ? 0 : 1);
    }

    /** Run {@code body} on {@code n} threads released at once; rethrow the first failure. */
    private static void race(int n, Callable<Void> body) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(n);
        try {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<Void>> futures = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                futures.add(pool.submit(() -> {
                    start.await();
                    return body.call();
                }));
            }
            start.countDown();
            for (Future<Void> f : futures) {
                f.get();
            }
        } finally {
            pool.shutdownNow();
        }
    }
}
