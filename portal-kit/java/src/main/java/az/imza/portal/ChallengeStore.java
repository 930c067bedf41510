package az.imza.portal;

import java.security.SecureRandom;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * Login challenges: issued by the portal's server, used once, fresh for a short time, bound
 * to the session they were issued to. This store keeps them in memory (one JVM) and is safe
 * to share between request threads; several JVMs share a {@link ChallengeBackend} instead.
 */
public final class ChallengeStore implements ChallengeBackend {
    /** docs/protocol.md asks for a fresh challenge: five minutes by default. */
    public static final Duration DEFAULT_LIFETIME = Duration.ofSeconds(300);
    /** docs/protocol.md: at least 32 random bytes. */
    public static final int CHALLENGE_BYTES = 32;
    // A bound on memory whatever the request rate: old entries go first.
    private static final int MAX_ENTRIES = 1_000_000;

    private static final class Entry {
        final Instant issuedAt;
        boolean used;

        Entry(Instant issuedAt, boolean used) {
            this.issuedAt = issuedAt;
            this.used = used;
        }
    }

    private final Clock clock;
    private final Duration lifetime;
    private final SecureRandom random = new SecureRandom();
    private final Map<String, Entry> entries = new LinkedHashMap<>();

    public ChallengeStore() {
        this(Clock.systemUTC(), DEFAULT_LIFETIME);
    }

    public ChallengeStore(Clock clock) {
        this(clock, DEFAULT_LIFETIME);
    }

    public ChallengeStore(Clock clock, Duration lifetime) {
        this.clock = Objects.requireNonNull(clock, "clock");
        this.lifetime = Objects.requireNonNull(lifetime, "lifetime");
        if (lifetime.isNegative() || lifetime.isZero()) {
            throw new IllegalArgumentException("the lifetime must be positive");
        }
    }

    public Duration lifetime() {
        return lifetime;
    }

    /** A new challenge for {@code session}: 32 random bytes, base64url without padding. */
    @Override
    public String issue(String session) {
        byte[] bytes = new byte[CHALLENGE_BYTES];
        random.nextBytes(bytes);
        String challenge = Base64.getUrlEncoder().withoutPadding().encodeToString(bytes);
        register(challenge, session, clock.instant(), false);
        return challenge;
    }

    /** Record a challenge made elsewhere (another node, or a test vector). */
    public void register(String challenge, String session, Instant issuedAt, boolean used) {
        Objects.requireNonNull(issuedAt, "issuedAt");
        String key = key(challenge, session);
        synchronized (entries) {
            purge();
            entries.put(key, new Entry(issuedAt, used));
        }
    }

    @Override
    public void consume(String challenge, String session) throws LoginError {
        Instant now = clock.instant();
        String key = key(challenge, session);
        synchronized (entries) {
            Entry entry = entries.get(key);
            if (entry == null) {
                throw new LoginError(LoginError.Code.CHALLENGE_UNKNOWN,
                        "this challenge was not issued to this session");
            }
            if (entry.used) {
                throw new LoginError(LoginError.Code.CHALLENGE_USED,
                        "this challenge was already used");
            }
            entry.used = true; // consumed whatever the later checks say
            if (Duration.between(entry.issuedAt, now).compareTo(lifetime) > 0) {
                throw new LoginError(LoginError.Code.CHALLENGE_EXPIRED,
                        "the challenge is older than " + lifetime.getSeconds() + " s");
            }
        }
    }

    private void purge() {
        // Used and expired entries stay for one more lifetime, so a quick replay is reported
        // as a replay rather than as an unknown challenge. Entries are in the order they
        // were issued, so the old ones are at the front: amortised O(1) per issue.
        Instant horizon = clock.instant().minus(lifetime.multipliedBy(2));
        Iterator<Entry> oldest = entries.values().iterator();
        while (oldest.hasNext()) {
            Entry entry = oldest.next();
            if (!entry.issuedAt.isBefore(horizon) && entries.size() < MAX_ENTRIES) {
                return;
            }
            oldest.remove();
        }
    }

    private static String key(String challenge, String session) {
        Objects.requireNonNull(challenge, "challenge");
        Objects.requireNonNull(session, "session");
        // Padding is optional in docs/protocol.md: one challenge, one key. The session id
        // goes first with its length, so no (session, challenge) pair can mimic another.
        String canonical = challenge.replaceAll("=+$", "");
        return session.length() + ":" + session + ":" + canonical;
    }
}
