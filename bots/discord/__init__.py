"""The Discord adapter: the gateway bot that stores questions and the worker-side delivery."""
