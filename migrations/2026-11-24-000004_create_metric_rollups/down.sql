DROP TABLE metric_rollups;
