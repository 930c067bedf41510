"""``agent.info``: who the agent is; and, for origins the policy knows, what it can do.

An origin with no grant learns only name, version and protocol, so an arbitrary site
cannot fingerprint the installation (formats, enabled methods) without the user's say.
"""

from __future__ import annotations

from agent import PROTOCOL_VERSION, __version__
from agent.app.services import Services
from agent.formats.digests import DIGEST_CHOICES
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import NoParams
from agent.protocol.results import AgentInfoResult

AGENT_NAME = "imza-agent"


def register(dispatcher: Dispatcher, app: Services) -> None:
    async def agent_info(ctx: CallContext, params: NoParams) -> AgentInfoResult:
        if not app.core.policy.has_any_grant(ctx.origin):
            return AgentInfoResult(name=AGENT_NAME, version=__version__,
                                   protocol=PROTOCOL_VERSION)
        return AgentInfoResult(
            name=AGENT_NAME, version=__version__, protocol=PROTOCOL_VERSION,
            origin=ctx.origin, transport=ctx.transport,
            # Uploads need binary frames: not on the extension's transport.
            features=sorted(m for m in dispatcher.methods
                            if m != "document.upload" or ctx.transport != "extension"),
            formats={fmt: list(levels) for fmt, levels in app.formats.items()},
            digest_algorithms={fmt: list(DIGEST_CHOICES) for fmt in app.formats
                               if fmt in ("pdf", "xml", "asic")})

    dispatcher.register("agent.info", NoParams, agent_info)
