// The error codes of portal-kit/vectors/SCHEMA.md: the same names in every language, so a
// portal maps them to its own messages once.

export const ErrorCodes = Object.freeze({
  MALFORMED: 'MALFORMED',
  UNSUPPORTED_FORMAT: 'UNSUPPORTED_FORMAT',
  CHALLENGE_UNKNOWN: 'CHALLENGE_UNKNOWN',
  CHALLENGE_USED: 'CHALLENGE_USED',
  CHALLENGE_EXPIRED: 'CHALLENGE_EXPIRED',
  ALGORITHM_MISMATCH: 'ALGORITHM_MISMATCH',
  SIGNATURE_INVALID: 'SIGNATURE_INVALID',
  CERT_UNTRUSTED: 'CERT_UNTRUSTED',
  CERT_EXPIRED: 'CERT_EXPIRED',
  CERT_NOT_YET_VALID: 'CERT_NOT_YET_VALID',
  CERT_NOT_FOR_AUTH: 'CERT_NOT_FOR_AUTH',
  CERT_REVOKED: 'CERT_REVOKED',
  REVOCATION_UNKNOWN: 'REVOCATION_UNKNOWN',
});

export class LoginError extends Error {
  /** @param {string} code one of ErrorCodes  @param {string} [detail] for logs, not users */
  constructor(code, detail) {
    super(detail ? `${code}: ${detail}` : code);
    this.name = 'LoginError';
    this.code = code;
  }
}
