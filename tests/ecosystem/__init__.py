"""Use beside other tools: asyncio, the command line, packaging, framework recipes, signals."""
