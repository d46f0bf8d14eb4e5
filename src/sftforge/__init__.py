"""sftforge: instruction fine-tuning with the right data, the right masks, and the same
template at training and inference."""

from sftforge.errors import ConversationError, SftForgeError, TemplateError
from sftforge.templates import ChatTemplate, Template, get_template, template_names
from sftforge.types import Conversation, Message, as_conversation

__version__ = "0.1.0"

__all__ = [
    "ChatTemplate",
    "Conversation",
    "ConversationError",
    "Message",
    "SftForgeError",
    "Template",
    "TemplateError",
    "__version__",
    "as_conversation",
    "get_template",
    "template_names",
]
