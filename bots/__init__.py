"""Chat platform adapters (console, Discord, Telegram) and the `ponder` command line."""
