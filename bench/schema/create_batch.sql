-- pgbench script: what one batch of 64 creates writes, as instance_store's create_batch_sql
-- writes it (instances, their first events through the statement trigger, their jobs and the
-- jobs' NOTIFY; no Idempotency-Key, as bench/http/post_instance.lua), in one transaction.
WITH input AS (
  SELECT gen_random_uuid() AS id, 'gce' AS provider, 'image-2016-01-01' AS image,
         'standard' AS instance_type, 'ssh-rsa AAAA' AS public_ssh_key, NULL::text AS zone,
         '{}'::jsonb AS tags, (SELECT min(id) FROM tokens) AS created_by
  FROM generate_series(1, 64)),
ins AS (
  INSERT INTO instances (id, provider, image, instance_type, public_ssh_key, zone, tags,
                         created_by)
  SELECT t.id, t.provider, t.image, t.instance_type, t.public_ssh_key, t.zone, t.tags,
         t.created_by
  FROM input t
  RETURNING id, provider),
j AS (
  INSERT INTO jobs (kind, instance_id, provider, cloud_key, max_attempts)
  SELECT 'create_instance', id, provider, 'create-' || id, 10 FROM ins)
SELECT count(*) FROM ins;
