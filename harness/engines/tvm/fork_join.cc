// A fork-join launcher for the model library's parallel kernels, linked into every CPU model
// library (harness/engines/tvm/compile.py) and switched on by the runner after loading it
// (harness/engines/tvm/runtime.py: slm_fork_join_install).
//
// Why: TVM's generated code starts each parallel loop through the function pointer
// __TVMBackendParallelLaunch, which TVM's runtime points at its thread pool. That pool's workers
// wait for work, and its caller for their end, in sched_yield() loops: a system call per check,
// so each side notices the other a system call late. A decode step of SmolLM2-135M starts about
// 150 parallel kernels of 5-60 us; a launch cost 1.6-2.5 us where a serial call cost 0.25 us
// (AMD EPYC Zen 3 VM, 2 threads), and the caller spent 17% of a step waiting (perf). Here both
// sides spin on one cache line with a pause instruction, so a launch costs a cache-line transfer
// each way; idle workers sleep on a futex after SPIN_NS.
//
// Written in the subset of C++ that is also C (gcc's __atomic builtins, pthreads, the futex
// system call), so that g++, a cross gcc and the NDK's clang++ all build it with the model and
// no C++ runtime library is needed. Linux and Android only (futex).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // sched_getaffinity, CPU_COUNT
#endif
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>

#if defined(__x86_64__) || defined(__i386__)
#define RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define RELAX() __asm__ __volatile__("yield")
#else
#define RELAX() ((void)0)
#endif

#ifdef __cplusplus
extern "C" {
#endif

// TVM's C ABI for parallel lambdas (tvm/runtime/c_backend_api.h): task ids 0..num_task-1, each
// computing its own share of the loop from its id and num_task.
typedef struct {
  void* sync_handle;
  int32_t num_task;
} SlmParallelEnv;
typedef int (*SlmParallelLambda)(int task_id, SlmParallelEnv* env, void* cdata);
typedef int (*SlmLaunchFn)(SlmParallelLambda flambda, void* cdata, int num_task);

// Defined (weak) by TVM's code generator in every library with a parallel loop, and set to TVM's
// pool when the runtime loads the library. Weak here too: a library without one links and loads.
extern __attribute__((weak)) SlmLaunchFn __TVMBackendParallelLaunch;

// A worker waits for the next job pausing on its cache line for PAUSE_NS (the host's work
// between two kernels of a decode step: VM dispatch, norms, a few microseconds), then yielding
// its core between checks (between decode steps: sampling, Python), and sleeps after SPIN_NS,
// so that an idle process stops burning cores within a millisecond. The caller waits for the
// workers the same way. With more threads than cores, pausing would keep the thread that has
// work off the core: both yield from the start then.
#define PAUSE_NS 50000L
#define SPIN_NS 1000000L
#define MAX_THREADS 256
#define LINE 64

static struct {
  __attribute__((aligned(LINE))) uint32_t epoch;  // +1 per job: the line workers spin on
  __attribute__((aligned(LINE))) int32_t running;  // workers not yet done with this job
  __attribute__((aligned(LINE))) int32_t sleepers;  // workers in futex_wait on epoch
  __attribute__((aligned(LINE))) int32_t busy;  // a launch is in progress
  // the job, written before epoch is bumped
  SlmParallelLambda flambda;
  void* cdata;
  SlmParallelEnv env;
  int32_t active;  // threads taking part, the caller included
  int32_t failed;
  // the pool
  int32_t threads;  // requested by slm_fork_join_install
  long pause_ns;  // PAUSE_NS, or 0 with more threads than cores
  int32_t started;  // workers created (ids 1..started)
  SlmLaunchFn tvm_launch;  // TVM's launcher, kept for slm_fork_join_install(0)
} pool;

static __thread int in_worker;
// The epoch each worker starts from: the one before the launch that created it.
static uint32_t start_epoch[MAX_THREADS];

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void futex(uint32_t* word, int op, uint32_t value) {
  syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

// Tasks first, first + active, ...: one per thread when num_task equals the thread count.
static void run_tasks(int32_t first) {
  for (int32_t t = first; t < pool.env.num_task; t += pool.active) {
    if (pool.flambda(t, &pool.env, pool.cdata) != 0) __atomic_store_n(&pool.failed, 1, __ATOMIC_RELAXED);
  }
}

// A wait's state: when it began and how old it was at the last clock read.
typedef struct {
  long start, age;
  uint32_t steps;
} Wait;

// One step of a wait: pause while it is younger than pause_ns, then yield the core; the clock
// is read every 256 pauses and at every yield.
static void wait_step(Wait* w) {
  int yielding = w->age >= pool.pause_ns;
  if (yielding) {
    sched_yield();
  } else {
    RELAX();
  }
  if (yielding || w->steps++ % 256 == 0) {
    long t = now_ns();
    if (!w->start) w->start = t;
    w->age = t - w->start;
  }
}

// Wait until epoch moves past seen: spin, then sleep. Returns the new epoch.
static uint32_t wait_for_job(uint32_t seen) {
  Wait w = {0, 0, 0};
  for (;;) {
    uint32_t now = __atomic_load_n(&pool.epoch, __ATOMIC_ACQUIRE);
    if (now != seen) return now;
    wait_step(&w);
    if (w.age < SPIN_NS) continue;
    // A launch bumps epoch, then wakes if it sees a sleeper; we count ourselves, then check
    // epoch again (both sequentially consistent): one of the two sees the other.
    __atomic_fetch_add(&pool.sleepers, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&pool.epoch, __ATOMIC_SEQ_CST) == seen) {
      futex(&pool.epoch, FUTEX_WAIT_PRIVATE, seen);
    }
    __atomic_fetch_sub(&pool.sleepers, 1, __ATOMIC_SEQ_CST);
    w.start = w.age = 0;
  }
}

static void* worker_main(void* arg) {
  int32_t id = (int32_t)(intptr_t)arg;
  in_worker = 1;
  uint32_t seen = start_epoch[id];
  for (;;) {
    seen = wait_for_job(seen);
    if (id < pool.active) {
      run_tasks(id);
      __atomic_fetch_sub(&pool.running, 1, __ATOMIC_RELEASE);
    }
  }
  return NULL;
}

// Workers 1..threads-1 (the caller is thread 0), created on the first launch that needs them.
static int32_t ensure_workers(int32_t threads) {
  while (pool.started < threads - 1) {
    pthread_t t;
    start_epoch[pool.started + 1] = pool.epoch;  // launches bump it only after this
    if (pthread_create(&t, NULL, worker_main, (void*)(intptr_t)(pool.started + 1)) != 0) break;
    pthread_detach(t);
    pool.started += 1;
  }
  return pool.started + 1;
}

// A forked child has the parent's pool state but none of its workers.
static void forget_workers(void) {
  pool.started = 0;
  pool.busy = 0;
}

static int serial_launch(SlmParallelLambda flambda, void* cdata, int num_task) {
  SlmParallelEnv env = {NULL, num_task};
  int failed = 0;
  for (int t = 0; t < num_task; ++t) failed |= flambda(t, &env, cdata) != 0;
  return failed ? -1 : 0;
}

static int fork_join_launch(SlmParallelLambda flambda, void* cdata, int num_task) {
  int32_t threads = pool.threads;
  if (num_task <= 0) num_task = threads;
  // Nested (from a worker) or concurrent (another application thread) launches run their tasks
  // on the calling thread: our kernels never synchronize between tasks, so any order is right.
  if (in_worker || threads <= 1 || __atomic_exchange_n(&pool.busy, 1, __ATOMIC_ACQUIRE)) {
    return serial_launch(flambda, cdata, num_task);
  }
  int32_t active = ensure_workers(threads);
  if (active > num_task) active = num_task;
  pool.flambda = flambda;
  pool.cdata = cdata;
  pool.env.sync_handle = NULL;
  pool.env.num_task = num_task;
  pool.active = active;
  pool.failed = 0;
  __atomic_store_n(&pool.running, active - 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&pool.epoch, 1, __ATOMIC_SEQ_CST);  // publishes the job
  if (__atomic_load_n(&pool.sleepers, __ATOMIC_SEQ_CST) > 0) {
    futex(&pool.epoch, FUTEX_WAKE_PRIVATE, INT32_MAX);
  }
  run_tasks(0);
  Wait w = {0, 0, 0};
  while (__atomic_load_n(&pool.running, __ATOMIC_ACQUIRE) > 0) wait_step(&w);
  int failed = __atomic_load_n(&pool.failed, __ATOMIC_RELAXED);
  __atomic_store_n(&pool.busy, 0, __ATOMIC_RELEASE);
  return failed ? -1 : 0;
}

// Route this library's parallel loops through the fork-join launcher with `threads` threads
// (the caller included), or back to TVM's pool with 0. Call it after TVM's runtime has loaded
// the library (loading points the launch pointer at TVM's pool). Returns 0, or -1 where the
// library has no parallel loop.
int slm_fork_join_install(int threads) {
  static int registered;
  if (!&__TVMBackendParallelLaunch) return -1;
  if (!registered) {
    pthread_atfork(NULL, NULL, forget_workers);
    registered = 1;
  }
  if (__TVMBackendParallelLaunch != fork_join_launch) pool.tvm_launch = __TVMBackendParallelLaunch;
  if (threads <= 0) {
    if (pool.tvm_launch) __TVMBackendParallelLaunch = pool.tvm_launch;
    return 0;
  }
  pool.threads = threads < MAX_THREADS ? threads : MAX_THREADS;
  cpu_set_t allowed;
  int cores = sched_getaffinity(0, sizeof(allowed), &allowed) == 0 ? CPU_COUNT(&allowed) : 0;
  pool.pause_ns = cores && pool.threads > cores ? 0 : PAUSE_NS;
  __TVMBackendParallelLaunch = fork_join_launch;
  return 0;
}

#ifdef __cplusplus
}
#endif
