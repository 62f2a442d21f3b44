import type { Logger } from 'pino';

export interface ScheduledJob {
  name: string;
  intervalMs: number;
  run(): Promise<void>;
}

/** Runs each job at its interval, never two runs of the same job at once; stop() waits for running jobs. */
export function startScheduler(jobs: ScheduledJob[], log: Logger): { stop(): Promise<void>; runNow(name: string): Promise<void> } {
  const running = new Map<string, Promise<void>>();
  const runJob = (job: ScheduledJob): Promise<void> => {
    const current = running.get(job.name);
    if (current) return current;
    const started = job
      .run()
      .catch((error: unknown) => log.error({ job: job.name, err: error }, 'scheduled job failed'))
      .finally(() => running.delete(job.name));
    running.set(job.name, started);
    return started;
  };
  const timers = jobs.map((job) => {
    const timer = setInterval(() => void runJob(job), job.intervalMs);
    timer.unref();
    return timer;
  });
  // First run shortly after start, so an overdue deletion does not wait a whole interval.
  const initial = setTimeout(() => jobs.forEach((job) => void runJob(job)), 1_000);
  initial.unref();
  return {
    async stop() {
      clearTimeout(initial);
      timers.forEach(clearInterval);
      await Promise.all(running.values());
    },
    async runNow(name) {
      const job = jobs.find((j) => j.name === name);
      if (!job) throw new Error(`no scheduled job named ${name}`);
      await runJob(job);
    },
  };
}
