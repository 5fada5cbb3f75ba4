"""«👁️ Посмотреть»: a press becomes a job, a job becomes a delivered picture or a release.

The rules, pure and tested without an event loop:

    decision    what a press may do (stale, resend, in flight, off, reserve)
    lifecycle   the job's steps, where a resumed job starts, how each exit ends it
    status      what the status message shows (``next_action``), and its one writer
    placement   which ComfyUI server draws a job, or why none does yet

The I/O around them:

    press       the press and «✖ Отмена» handlers
    queue       the bounded queue between presses and workers
    workers     a job's steps: prepare, generate (ComfyUI), deliver
    settle      charge or release, and the final event, exactly once
    delivery    photo, else document; resend by file_id
    prompts     the reply's scene, told in English by the LLM
    uploading   "sending a photo…" while a picture uploads
    spool       pictures on disk while their job is active
    deliveries  uploads in flight, shielded from a stop for a bounded grace
    recovery    jobs left by an earlier process, at start
    preflight   does each ComfyUI server have the checkpoint and every LoRA?
    servers     the ComfyUI servers: their slots, the wait for one, placing, failover
    runtime     the machinery one process runs; ``start`` builds and starts it
"""
