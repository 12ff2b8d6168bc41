"""What the tests share: one worker-process harness, one wait_for, the /proc readers, metrics scraping, the Flask
app factory. Nothing here is collected as a test.

- worker_process.py: `WorkerProcess`, a `worker serve` subprocess (start with an env, wait for /ready, post, read
  its JSON log, stop by PID; restartable on one port).
- chain.py: the emulator chain the push tests and the stress campaign share (buckets, topic, push subscription).
- waiting.py: `wait_for`, the one poll loop.
- processes.py: which live processes a test started, what they hold open, and counts, read from /proc (RSS:
  worker.office.procfs.rss_bytes).
- metrics_scrape.py: the Prometheus exposition parsed once into samples.
- web_app.py: `make_app` (the app factory the `app`/`client` fixtures of tests/conftest.py use), `RecordingJob`,
  `NoPool`.

The push envelope itself is built by worker.emulators.push_envelope, shared with `worker demo` and bench/.
"""
