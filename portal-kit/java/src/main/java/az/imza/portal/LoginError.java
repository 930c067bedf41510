package az.imza.portal;

/**
 * A login token was refused. {@link #code()} is for the program (map it to a message for the
 * user); {@link #getMessage()} is for the portal's log and never contains secrets.
 */
public final class LoginError extends Exception {
    private static final long serialVersionUID = 1L;

    /**
     * The same names in every language of the kit (portal-kit/vectors/SCHEMA.md), listed in
     * the order the verifier checks them: the first failing check wins.
     */
    public enum Code {
        MALFORMED,
        UNSUPPORTED_FORMAT,
        CHALLENGE_UNKNOWN,
        CHALLENGE_USED,
        CHALLENGE_EXPIRED,
        ALGORITHM_MISMATCH,
        SIGNATURE_INVALID,
        CERT_UNTRUSTED,
        CERT_EXPIRED,
        CERT_NOT_YET_VALID,
        CERT_NOT_FOR_AUTH,
        CERT_REVOKED,
        REVOCATION_UNKNOWN
    }

    private final Code code;

    public LoginError(Code code, String message) {
        super(code.name() + ": " + message);
        this.code = code;
    }

    public LoginError(Code code, String message, Throwable cause) {
        super(code.name() + ": " + message, cause);
        this.code = code;
    }

    public Code code() {
        return code;
    }
}
