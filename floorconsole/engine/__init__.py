"""Engine: asyncio orchestration of sources, hub, historian; no Textual."""
