-- pgbench script: PostgreSQL's own single-row durable INSERT, one transaction each.
INSERT INTO bench_insert (image, provider) VALUES ('image-2016-01-01', 'gce');
