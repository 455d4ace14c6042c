-- Back to the 14 coarser bounds: each old bucket sums the finer ones within it.
UPDATE metric_rollups SET latency_histogram = json_array(
    json_extract(latency_histogram, '$[0]') + json_extract(latency_histogram, '$[1]') + json_extract(latency_histogram, '$[2]'),
    json_extract(latency_histogram, '$[3]'),
    json_extract(latency_histogram, '$[4]'),
    json_extract(latency_histogram, '$[5]'),
    json_extract(latency_histogram, '$[6]'),
    json_extract(latency_histogram, '$[7]'),
    json_extract(latency_histogram, '$[8]'),
    json_extract(latency_histogram, '$[9]'),
    json_extract(latency_histogram, '$[10]'),
    json_extract(latency_histogram, '$[11]'),
    json_extract(latency_histogram, '$[12]') + json_extract(latency_histogram, '$[13]'),
    json_extract(latency_histogram, '$[14]') + json_extract(latency_histogram, '$[15]') + json_extract(latency_histogram, '$[16]'),
    json_extract(latency_histogram, '$[17]') + json_extract(latency_histogram, '$[18]') + json_extract(latency_histogram, '$[19]'),
    json_extract(latency_histogram, '$[20]') + json_extract(latency_histogram, '$[21]'),
    json_extract(latency_histogram, '$[22]') + json_extract(latency_histogram, '$[23]') + json_extract(latency_histogram, '$[24]') + json_extract(latency_histogram, '$[25]') + json_extract(latency_histogram, '$[26]') + json_extract(latency_histogram, '$[27]')
)
WHERE json_array_length(latency_histogram) = 28;
