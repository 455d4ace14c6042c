-- Latency buckets got finer (bounds in src/telemetry/metrics.rs): 27 bounds instead of 14, every
-- old bound kept. Stored counts move to the new bucket with their old upper bound. The old last
-- bucket (over 10 s) had no upper bound; its counts go to (10 s, 15 s], where slow LLM calls
-- mostly fall, rather than past two minutes.
UPDATE metric_rollups SET latency_histogram = json_array(
    0,
    0,
    json_extract(latency_histogram, '$[0]'),
    json_extract(latency_histogram, '$[1]'),
    json_extract(latency_histogram, '$[2]'),
    json_extract(latency_histogram, '$[3]'),
    json_extract(latency_histogram, '$[4]'),
    json_extract(latency_histogram, '$[5]'),
    json_extract(latency_histogram, '$[6]'),
    json_extract(latency_histogram, '$[7]'),
    json_extract(latency_histogram, '$[8]'),
    json_extract(latency_histogram, '$[9]'),
    0,
    json_extract(latency_histogram, '$[10]'),
    0,
    0,
    json_extract(latency_histogram, '$[11]'),
    0,
    0,
    json_extract(latency_histogram, '$[12]'),
    0,
    json_extract(latency_histogram, '$[13]'),
    json_extract(latency_histogram, '$[14]'),
    0,
    0,
    0,
    0,
    0
)
WHERE json_array_length(latency_histogram) = 15;
