"""The aiohttp layer: middleware, authentication, request context, the API description."""
