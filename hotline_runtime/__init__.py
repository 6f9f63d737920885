"""The shared runtime under the bot and the gateway: the wire contract between them, the Matrix
adapter, the Synapse admin client, errors, logs and settings helpers. It imports neither `bot` nor
`webchat` nor `hotline` (the import contract in pyproject.toml checks it)."""
