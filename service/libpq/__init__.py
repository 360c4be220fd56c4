"""Database URLs as libpq (and so psql) reads them, turned into what the asyncpg driver takes.

`url` reads the URL and its parameters (pure); `tls` builds the TLS the URL's `sslmode` asks
for. Both stand alone (no other module of the service), so the settings can refuse a bad URL at
start and `service.db.engine` can build every connection from the same reading.
"""
