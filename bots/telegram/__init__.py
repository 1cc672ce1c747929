"""The Telegram adapter: the bot that takes questions and the worker-side answer delivery."""
