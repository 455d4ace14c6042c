-- Latency of the built-in emulator, used when a proxy's upstream_url is 'emulator'.
ALTER TABLE proxies ADD COLUMN emulator_ttft_ms INTEGER NOT NULL DEFAULT 200 CHECK (emulator_ttft_ms >= 0);
ALTER TABLE proxies ADD COLUMN emulator_tokens_per_second INTEGER NOT NULL DEFAULT 50 CHECK (emulator_tokens_per_second > 0);
