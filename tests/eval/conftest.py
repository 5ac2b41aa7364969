# The loopback chat-completions server of the DocAssist tests also plays the GEval judge here.
from tests.docassist.conftest import chat_server  # noqa: F401
