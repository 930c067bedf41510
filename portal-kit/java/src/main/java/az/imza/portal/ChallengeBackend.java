package az.imza.portal;

/**
 * What {@link LoginVerifier} needs from a challenge store. {@link ChallengeStore} keeps
 * challenges in one JVM's memory; a portal running several JVMs implements this over a
 * shared store (e.g. Redis: {@code SET key issuedAt NX EX lifetime} on issue, an atomic
 * get-and-mark on consume).
 */
public interface ChallengeBackend {
    /** A new challenge for {@code session}: base64url without padding, at least 32 bytes. */
    String issue(String session);

    /**
     * Mark {@code challenge} used, or throw CHALLENGE_UNKNOWN (never issued to this
     * session), CHALLENGE_USED (a replay) or CHALLENGE_EXPIRED. An expired challenge is
     * consumed too.
     */
    void consume(String challenge, String session) throws LoginError;
}
