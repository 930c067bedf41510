// Code the types must refuse: tests/test_sdk_package.py expects `tsc --noEmit --strict` to
// fail on each line marked `@expect-error-line` (one error per marked line, none elsewhere).
import { connect, ImzaError, Kind } from "@imza/agent-sdk";

export async function misuse(error: ImzaError): Promise<void> {
  const agent = await connect({ transports: ["carrier-pigeon"] }); // @expect-error-line
  await connect({ minimumAgentVersion: 2 }); // @expect-error-line
  await agent.login(42); // @expect-error-line
  await agent.login("x", { format: "jwt" }); // @expect-error-line
  const { token } = await agent.login("x", { format: "web-eid:1.0" });
  void token.certificate; // @expect-error-line
  await agent.signHash({ handle: "h", hash: "AA==" }); // @expect-error-line
  await agent.signCms({ handle: "h", hash: "AA==", data: "AA==", hashAlgorithm: "SHA-256", level: "B" }); // @expect-error-line
  await agent.signPdf({ handle: "h", pdf: "AA==", level: "B-X" }); // @expect-error-line
  await agent.signPdf({ handle: "h", pdf: 42, level: "B-B" }); // @expect-error-line
  await connect({ uploadThreshold: "1 MiB" }); // @expect-error-line
  const kind: typeof Kind.AGENT_TOO_OLD = Kind.PAGE_TOO_OLD; // @expect-error-line
  void kind;
  const code: string = error.code; // @expect-error-line
  void code;
  void Kind.VERSION_MISMATCH; // @expect-error-line
}
