ALTER TABLE proxies DROP COLUMN emulator_tokens_per_second;
ALTER TABLE proxies DROP COLUMN emulator_ttft_ms;
