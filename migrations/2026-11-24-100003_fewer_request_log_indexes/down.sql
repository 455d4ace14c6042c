CREATE INDEX request_logs_timestamp ON request_logs (timestamp);
CREATE INDEX request_logs_status ON request_logs (status);
