// Compiled with `tsc --noEmit --strict` by tests/test_portal_kit_node.py: the declarations
// must describe how a portal uses the package, and refuse misuse.
import { ChallengeStore, LoginVerifier, LoginError, ErrorCodes } from 'imza-portal-verify';
import type { ChallengeBackend, ErrorCode, LoginResult, LoginToken } from 'imza-portal-verify';
import { X509Certificate } from 'node:crypto';

const store = new ChallengeStore({ lifetimeSeconds: 120, clock: () => new Date() });
const challenge: string = store.issue('session-1');
store.register(challenge, 'session-2', new Date(), { used: false });
// a store of the portal's own, over its shared session store
const shared = { consume(c: string, s?: string): void { void c; void s; } };
void accepts(shared);
function accepts(backend: ChallengeBackend): ChallengeBackend { return backend; }
const verifier = new LoginVerifier({
  origin: 'https://portal.example.az',
  anchors: ['-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----', new Uint8Array(4)],
  crls: [new Uint8Array(4)],
  ocsp: { timeoutMs: 5000 },
  requireRevocationStatus: false,
  clock: () => Date.now(),
});

export async function login(body: { token: LoginToken }): Promise<string> {
  try {
    const user: LoginResult = await verifier.verify(body.token, { challenge, store, session: 'session-1' });
    const cert: X509Certificate = user.certificate;
    const path: X509Certificate[] = user.chain;
    const personalId: string | null = user.subjectSerialNumber;
    return `${user.subject} ${user.serialNumber} ${user.sha256} ${cert.issuer} ${path.length} ${personalId ?? ''}`;
  } catch (error) {
    if (error instanceof LoginError) {
      const code: ErrorCode = error.code;
      if (code === ErrorCodes.CHALLENGE_EXPIRED) return 'try again';
      return code;
    }
    throw error;
  }
}

// @ts-expect-error: an error code that does not exist
const wrong: ErrorCode = 'CERT_BAD';
// @ts-expect-error: the origin is required
new LoginVerifier({ anchors: [] });
// @ts-expect-error: verify needs the session's challenge and store
void verifier.verify({}, { session: 'x' });
void wrong;
