DROP TABLE deleted_proxies;
