"""Tools for agents: tool schemas, the prompt that offers them, and tool-call parsing."""

from greenserv_core.tools.calls import (
    InvalidToolCall,
    ParsedOutput,
    ToolCall,
    in_call_order,
    message_with_tool_calls,
    parse_tool_calls,
    tool_result_turn,
    with_tool_calls,
)
from greenserv_core.tools.spec import ToolSpec, as_tool_specs, tools_system_prompt, with_tools_prompt

__all__ = [
    "InvalidToolCall",
    "ParsedOutput",
    "ToolCall",
    "ToolSpec",
    "as_tool_specs",
    "in_call_order",
    "message_with_tool_calls",
    "parse_tool_calls",
    "tool_result_turn",
    "tools_system_prompt",
    "with_tool_calls",
    "with_tools_prompt",
]
