"""The MCP (Model Context Protocol) server: the product's workflows, runs and records as tools an
AI assistant can call, with the person's API token (its scopes) and their role in the
organization. One server (server.py), two transports: streamable HTTP at /mcp (http.py, served
by the same WSGI servers as everything else) and stdio (`manage.py mcp_stdio`). Every call is
logged (audit.py, api.models.McpCall)."""
