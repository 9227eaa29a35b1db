/*
 * A fake CUDA driver (libcuda.so.1) for testing fastckpt's CUDA copy engine
 * on machines without a GPU. It implements the driver API entry points the
 * engine resolves (see csrc/fastckpt/device/cuda_driver.h), plus cuMemAlloc_v2 and
 * cuMemFree_v2 so that tests can make "device" buffers, with the same ABI as
 * cuda.h. "Device memory" is host memory.
 *
 * Faithful where it matters to the engine:
 *  - Streams are asynchronous: each stream has a worker thread that runs its
 *    operations (copies, event records, event waits) in order, so a missing
 *    synchronisation in the engine reads stale bytes instead of passing.
 *  - Calls that need a context fail with CUDA_ERROR_INVALID_CONTEXT when the
 *    calling thread has none current, and calls on a stream or event of
 *    another context fail, so a thread that forgot to make a context current
 *    is caught.
 *  - Events capture the stream's position at cuEventRecord; cuStreamWaitEvent
 *    captures the event's latest record at the call; re-recording is allowed.
 *  - The handles 0 / CU_STREAM_LEGACY (0x1) name the context's legacy default
 *    stream and CU_STREAM_PER_THREAD (0x2) the calling thread's own default
 *    stream.
 *  - An asynchronous copy that fails makes the context's error sticky
 *    (CUDA_ERROR_ILLEGAL_ADDRESS, as after a real illegal access): operations
 *    queued after it do not run and later calls in the context return it.
 *  - Copies must stay inside one cuMemAlloc_v2 allocation of the stream's
 *    device (else CUDA_ERROR_INVALID_VALUE at the call).
 *
 * Environment (read by cuInit):
 *  FAKE_CUDA_DEVICES=N    devices (default 1; 0: cuInit fails with
 *                         CUDA_ERROR_NO_DEVICE, as the real driver does)
 *  FAKE_CUDA_FAIL_COPY=N  the N-th asynchronous copy of the process (1-based,
 *                         both directions) fails when it runs; the error is
 *                         seen at the next synchronisation (or the next call)
 *  FAKE_CUDA_COPY_DELAY_US=U  every asynchronous copy first sleeps U us
 *
 * Test-only entry points (fake_cuda_*) report counters and let a test stall a
 * stream, as a long kernel would.
 *
 * Built by tests/test_cuda_fake_driver.py:
 *   cc -shared -fPIC -O1 -pthread -o <dir>/libcuda.so.1 fake_libcuda.c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct fake_ctx* CUcontext;
typedef struct fake_stream* CUstream;
typedef struct fake_event* CUevent;

#define API __attribute__((visibility("default")))

enum {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_OUT_OF_MEMORY = 2,
  CUDA_ERROR_NOT_INITIALIZED = 3,
  CUDA_ERROR_NO_DEVICE = 100,
  CUDA_ERROR_INVALID_DEVICE = 101,
  CUDA_ERROR_INVALID_CONTEXT = 201,
  CUDA_ERROR_INVALID_HANDLE = 400,
  CUDA_ERROR_ILLEGAL_ADDRESS = 700,
};

#define MAX_DEVICES 16
#define STREAM_MAGIC 0x5354524du
#define EVENT_MAGIC 0x4556454eu
#define DEAD_MAGIC 0xdeaddeadu

struct fake_ctx {
  int device;
  int retains;      /* cuDevicePrimaryCtxRetain calls: the context exists once > 0 */
  long host_allocs; /* cuMemHostAlloc calls made while this context was current */
  int sticky_error; /* set by a failed asynchronous copy */
  struct fake_stream* legacy;
};

enum op_kind { OP_COPY, OP_RECORD, OP_WAIT, OP_SLEEP };

struct op {
  enum op_kind kind;
  struct op* next;
  void* dst;
  const void* src;
  const void* host; /* the host side of a copy */
  size_t n;
  int fail;
  struct fake_event* ev;
  unsigned long seq;
  long usec;
};

struct fake_stream {
  unsigned magic;
  struct fake_ctx* ctx;
  struct op* head;
  struct op* tail;
  struct op* running; /* the copy being run outside the lock, if any */
  pthread_cond_t cv;
  int destroyed;
  struct fake_stream* next_live; /* registry of every stream ever created */
};

struct fake_event {
  unsigned magic;
  struct fake_ctx* ctx;
  unsigned long recorded;  /* records issued */
  unsigned long completed; /* records that the stream has reached */
  int refs;                /* queued operations that use the event */
  int destroyed;
  struct fake_event* next_free;
};

struct alloc {
  uintptr_t base;
  size_t size;
  struct fake_ctx* ctx;
  unsigned flags;
  struct alloc* next;
};

/* One lock for all state; copies and sleeps run outside it. g_cond is
 * broadcast whenever an event completes. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_initialized;
static int g_device_count;
static long g_fail_copy;
static long g_delay_us;
static long g_copies;
static struct fake_ctx g_ctx[MAX_DEVICES];
static struct fake_stream* g_streams;
static struct fake_event* g_free_events;
static struct alloc* g_device_allocs;
static struct alloc* g_host_allocs;
static long g_live_events, g_max_live_events, g_live_streams, g_live_host_allocs;
static long g_pageable_copies;
static long g_host_freed_in_use;

static __thread struct fake_ctx* t_current;
static pthread_key_t g_per_thread_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

/* Set once by cuInit; read without the lock by calls that check it first. */
static int initialized(void) { return __atomic_load_n(&g_initialized, __ATOMIC_ACQUIRE); }

static long env_long(const char* name, long dflt) {
  const char* v = getenv(name);
  return (v != NULL && *v != '\0') ? strtol(v, NULL, 10) : dflt;
}

static void sleep_us(long usec) {
  struct timespec ts;
  ts.tv_sec = usec / 1000000;
  ts.tv_nsec = (usec % 1000000) * 1000;
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* ---- events ---------------------------------------------------------------- */

static void event_unref_locked(struct fake_event* ev) {
  if (--ev->refs == 0 && ev->destroyed) {
    ev->next_free = g_free_events;
    g_free_events = ev;
  }
}

/* Event memory is recycled, never freed, so a stale handle reads a dead
 * magic number rather than freed memory. */
static int event_valid_locked(struct fake_event* ev) {
  return ev != NULL && ev->magic == EVENT_MAGIC;
}

/* ---- streams --------------------------------------------------------------- */

static void* stream_worker(void* arg) {
  struct fake_stream* s = (struct fake_stream*)arg;
  pthread_mutex_lock(&g_mu);
  for (;;) {
    while (s->head == NULL && !s->destroyed) pthread_cond_wait(&s->cv, &g_mu);
    struct op* op = s->head;
    if (op == NULL) break; /* destroyed and drained */
    s->head = op->next;
    if (s->head == NULL) s->tail = NULL;
    switch (op->kind) {
      case OP_COPY:
        if (!s->ctx->sticky_error) {
          s->running = op;
          pthread_mutex_unlock(&g_mu);
          if (g_delay_us > 0) sleep_us(g_delay_us);
          if (!op->fail) memcpy(op->dst, op->src, op->n);
          pthread_mutex_lock(&g_mu);
          s->running = NULL;
          if (op->fail) s->ctx->sticky_error = CUDA_ERROR_ILLEGAL_ADDRESS;
        }
        break;
      case OP_SLEEP:
        pthread_mutex_unlock(&g_mu);
        sleep_us(op->usec);
        pthread_mutex_lock(&g_mu);
        break;
      case OP_RECORD:
        if (op->seq > op->ev->completed) op->ev->completed = op->seq;
        event_unref_locked(op->ev);
        pthread_cond_broadcast(&g_cond);
        break;
      case OP_WAIT:
        while (op->ev->completed < op->seq) pthread_cond_wait(&g_cond, &g_mu);
        event_unref_locked(op->ev);
        break;
    }
    free(op);
  }
  /* The struct stays in the registry (dead magic) so stale handles are caught. */
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

static struct fake_stream* stream_new_locked(struct fake_ctx* ctx) {
  struct fake_stream* s = (struct fake_stream*)calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->magic = STREAM_MAGIC;
  s->ctx = ctx;
  pthread_cond_init(&s->cv, NULL);
  pthread_t t;
  if (pthread_create(&t, NULL, stream_worker, s) != 0) {
    free(s);
    return NULL;
  }
  pthread_detach(t);
  s->next_live = g_streams;
  g_streams = s;
  return s;
}

static void stream_destroy_locked(struct fake_stream* s) {
  s->magic = DEAD_MAGIC;
  s->destroyed = 1;
  pthread_cond_signal(&s->cv);
}

/* Per-thread default streams die with their thread. */
static void per_thread_streams_free(void* p) {
  struct fake_stream** arr = (struct fake_stream**)p;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < MAX_DEVICES; i++) {
    if (arr[i] != NULL) stream_destroy_locked(arr[i]);
  }
  pthread_mutex_unlock(&g_mu);
  free(arr);
}

static void make_key(void) { pthread_key_create(&g_per_thread_key, per_thread_streams_free); }

/* The stream a handle names, for the calling thread. REQUIRES: g_mu held. */
static CUresult resolve_stream_locked(CUstream h, struct fake_stream** out) {
  uintptr_t v = (uintptr_t)h;
  if (v == 0 || v == 1 || v == 2) {
    struct fake_ctx* ctx = t_current;
    if (ctx == NULL) return CUDA_ERROR_INVALID_CONTEXT;
    if (v != 2) {
      if (ctx->legacy == NULL) ctx->legacy = stream_new_locked(ctx);
      *out = ctx->legacy;
    } else {
      pthread_once(&g_key_once, make_key);
      struct fake_stream** arr = (struct fake_stream**)pthread_getspecific(g_per_thread_key);
      if (arr == NULL) {
        arr = (struct fake_stream**)calloc(MAX_DEVICES, sizeof(*arr));
        if (arr == NULL) return CUDA_ERROR_OUT_OF_MEMORY;
        pthread_setspecific(g_per_thread_key, arr);
      }
      if (arr[ctx->device] == NULL) arr[ctx->device] = stream_new_locked(ctx);
      *out = arr[ctx->device];
    }
    return *out != NULL ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
  }
  for (struct fake_stream* s = g_streams; s != NULL; s = s->next_live) {
    if (s == h) {
      if (s->magic != STREAM_MAGIC) return CUDA_ERROR_INVALID_HANDLE;
      *out = s;
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_INVALID_HANDLE;
}

/* Streams run work only in the current context: a caller that did not make
 * the stream's context current is a bug worth catching. */
static CUresult stream_for_call_locked(CUstream h, struct fake_stream** out) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_current == NULL) return CUDA_ERROR_INVALID_CONTEXT;
  CUresult rc = resolve_stream_locked(h, out);
  if (rc != CUDA_SUCCESS) return rc;
  if ((*out)->ctx != t_current) return CUDA_ERROR_INVALID_CONTEXT;
  if (t_current->sticky_error) return t_current->sticky_error;
  return CUDA_SUCCESS;
}

static CUresult enqueue_locked(struct fake_stream* s, struct op* op) {
  op->next = NULL;
  if (s->tail != NULL) {
    s->tail->next = op;
  } else {
    s->head = op;
  }
  s->tail = op;
  pthread_cond_signal(&s->cv);
  return CUDA_SUCCESS;
}

/* ---- allocations ----------------------------------------------------------- */

static struct alloc* find_alloc(struct alloc* list, uintptr_t p, size_t n) {
  for (struct alloc* a = list; a != NULL; a = a->next) {
    if (p >= a->base && p - a->base <= a->size && n <= a->size - (p - a->base)) return a;
  }
  return NULL;
}

static int remove_alloc(struct alloc** list, uintptr_t base, int release) {
  for (struct alloc** pp = list; *pp != NULL; pp = &(*pp)->next) {
    if ((*pp)->base == base) {
      struct alloc* a = *pp;
      *pp = a->next;
      if (release) free((void*)a->base);
      free(a);
      return 1;
    }
  }
  return 0;
}

static CUresult add_alloc(struct alloc** list, size_t n, unsigned flags, uintptr_t* out) {
  struct alloc* a = (struct alloc*)calloc(1, sizeof(*a));
  void* p = malloc(n);
  if (a == NULL || p == NULL) {
    free(a);
    free(p);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  a->base = (uintptr_t)p;
  a->size = n;
  a->ctx = t_current;
  a->flags = flags;
  a->next = *list;
  *list = a;
  *out = a->base;
  return CUDA_SUCCESS;
}

/* Host memory counts as page-locked for a context if cuMemHostAlloc made it
 * there, or anywhere with CU_MEMHOSTALLOC_PORTABLE. Copies to other memory
 * still work (as in CUDA, where they are not truly asynchronous); they are
 * counted so that tests can check the engine stages through pinned memory. */
static void note_host_memory_locked(struct fake_ctx* ctx, const void* p, size_t n) {
  struct alloc* a = find_alloc(g_host_allocs, (uintptr_t)p, n);
  if (a == NULL || !((a->flags & 1u) || a->ctx == ctx)) g_pageable_copies++;
}

static CUresult copy_async(void* dst, const void* src, size_t n, CUstream h, CUdeviceptr dptr,
                           const void* host) {
  pthread_mutex_lock(&g_mu);
  struct fake_stream* s = NULL;
  CUresult rc = stream_for_call_locked(h, &s);
  if (rc == CUDA_SUCCESS && n > 0) {
    struct alloc* a = find_alloc(g_device_allocs, (uintptr_t)dptr, n);
    if (a == NULL || a->ctx != s->ctx) rc = CUDA_ERROR_INVALID_VALUE;
  }
  if (rc == CUDA_SUCCESS && n > 0) {
    note_host_memory_locked(s->ctx, host, n);
    struct op* op = (struct op*)calloc(1, sizeof(*op));
    if (op == NULL) {
      rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
      op->kind = OP_COPY;
      op->dst = dst;
      op->src = src;
      op->host = host;
      op->n = n;
      op->fail = (++g_copies == g_fail_copy);
      rc = enqueue_locked(s, op);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

/* ---- the driver API -------------------------------------------------------- */

API CUresult cuInit(unsigned int flags) {
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  pthread_mutex_lock(&g_mu);
  CUresult rc = CUDA_SUCCESS;
  if (!initialized()) {
    long n = env_long("FAKE_CUDA_DEVICES", 1);
    if (n <= 0) {
      rc = CUDA_ERROR_NO_DEVICE;
    } else {
      g_device_count = (int)(n > MAX_DEVICES ? MAX_DEVICES : n);
      for (int i = 0; i < MAX_DEVICES; i++) g_ctx[i].device = i;
      g_fail_copy = env_long("FAKE_CUDA_FAIL_COPY", 0);
      g_delay_us = env_long("FAKE_CUDA_COPY_DELAY_US", 0);
      __atomic_store_n(&g_initialized, 1, __ATOMIC_RELEASE);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

API CUresult cuDriverGetVersion(int* version) {
  if (version == NULL) return CUDA_ERROR_INVALID_VALUE;
  *version = 12040;
  return CUDA_SUCCESS;
}

API CUresult cuDeviceGetCount(int* count) {
  if (count == NULL) return CUDA_ERROR_INVALID_VALUE;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  *count = g_device_count;
  return CUDA_SUCCESS;
}

API CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (device == NULL) return CUDA_ERROR_INVALID_VALUE;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (ordinal < 0 || ordinal >= g_device_count) return CUDA_ERROR_INVALID_DEVICE;
  *device = ordinal;
  return CUDA_SUCCESS;
}

API CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice device) {
  if (ctx == NULL) return CUDA_ERROR_INVALID_VALUE;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (device < 0 || device >= g_device_count) return CUDA_ERROR_INVALID_DEVICE;
  pthread_mutex_lock(&g_mu);
  g_ctx[device].retains++;
  pthread_mutex_unlock(&g_mu);
  *ctx = &g_ctx[device];
  return CUDA_SUCCESS;
}

API CUresult cuCtxSetCurrent(CUcontext ctx) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  pthread_mutex_lock(&g_mu);
  int valid = ctx == NULL || (ctx >= &g_ctx[0] && ctx < &g_ctx[g_device_count] && ctx->retains > 0);
  pthread_mutex_unlock(&g_mu);
  if (!valid) return CUDA_ERROR_INVALID_CONTEXT;
  t_current = ctx;
  return CUDA_SUCCESS;
}

API CUresult cuCtxGetCurrent(CUcontext* ctx) {
  if (ctx == NULL) return CUDA_ERROR_INVALID_VALUE;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  *ctx = t_current;
  return CUDA_SUCCESS;
}

API CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned int flags) {
  if (p == NULL || bytes == 0 || (flags & ~7u) != 0) return CUDA_ERROR_INVALID_VALUE;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_current == NULL) return CUDA_ERROR_INVALID_CONTEXT;
  pthread_mutex_lock(&g_mu);
  uintptr_t out = 0;
  CUresult rc = t_current->sticky_error ? t_current->sticky_error
                                        : add_alloc(&g_host_allocs, bytes, flags, &out);
  if (rc == CUDA_SUCCESS) {
    g_live_host_allocs++;
    t_current->host_allocs++;
  }
  pthread_mutex_unlock(&g_mu);
  *p = (void*)out;
  return rc;
}

/* Counts copies still queued (or running) that use [p, p + n): freeing
 * such memory is a use-after-free in CUDA too. REQUIRES: g_mu held. */
static int note_free_in_use_locked(uintptr_t p, size_t n) {
  long before = g_host_freed_in_use;
  for (struct fake_stream* s = g_streams; s != NULL; s = s->next_live) {
    for (struct op* op = s->head; op != NULL; op = op->next) {
      uintptr_t h = (uintptr_t)op->host;
      if (op->kind == OP_COPY && h < p + n && p < h + op->n) g_host_freed_in_use++;
    }
    if (s->running != NULL) {
      uintptr_t h = (uintptr_t)s->running->host;
      if (h < p + n && p < h + s->running->n) g_host_freed_in_use++;
    }
  }
  return g_host_freed_in_use != before;
}

API CUresult cuMemFreeHost(void* p) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_current == NULL) return CUDA_ERROR_INVALID_CONTEXT;
  pthread_mutex_lock(&g_mu);
  struct alloc* a = find_alloc(g_host_allocs, (uintptr_t)p, 0);
  /* Memory still in use is counted and then leaked rather than freed, so
   * that the test can report the bug instead of crashing on it. */
  int in_use = a != NULL && a->base == (uintptr_t)p && note_free_in_use_locked(a->base, a->size);
  CUresult rc = remove_alloc(&g_host_allocs, (uintptr_t)p, !in_use) ? CUDA_SUCCESS
                                                                    : CUDA_ERROR_INVALID_VALUE;
  if (rc == CUDA_SUCCESS) g_live_host_allocs--;
  pthread_mutex_unlock(&g_mu);
  return rc;
}

API CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
  if (dptr == NULL || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_current == NULL) return CUDA_ERROR_INVALID_CONTEXT;
  pthread_mutex_lock(&g_mu);
  uintptr_t out = 0;
  CUresult rc = add_alloc(&g_device_allocs, bytes, 0, &out);
  pthread_mutex_unlock(&g_mu);
  *dptr = (CUdeviceptr)out;
  return rc;
}

API CUresult cuMemFree_v2(CUdeviceptr dptr) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_current == NULL) return CUDA_ERROR_INVALID_CONTEXT;
  pthread_mutex_lock(&g_mu);
  CUresult rc = remove_alloc(&g_device_allocs, (uintptr_t)dptr, 1) ? CUDA_SUCCESS
                                                                : CUDA_ERROR_INVALID_VALUE;
  pthread_mutex_unlock(&g_mu);
  return rc;
}

API CUresult cuStreamCreate(CUstream* stream, unsigned int flags) {
  if (stream == NULL || (flags & ~1u) != 0) return CUDA_ERROR_INVALID_VALUE;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_current == NULL) return CUDA_ERROR_INVALID_CONTEXT;
  pthread_mutex_lock(&g_mu);
  CUresult rc = t_current->sticky_error;
  if (rc == CUDA_SUCCESS) {
    *stream = stream_new_locked(t_current);
    if (*stream == NULL) {
      rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
      g_live_streams++;
    }
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

API CUresult cuStreamDestroy_v2(CUstream h) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  uintptr_t v = (uintptr_t)h;
  if (v == 0 || v == 1 || v == 2) return CUDA_ERROR_INVALID_HANDLE;
  pthread_mutex_lock(&g_mu);
  struct fake_stream* s = NULL;
  CUresult rc = resolve_stream_locked(h, &s);
  if (rc == CUDA_SUCCESS) {
    /* Like CUDA: returns at once; queued work still runs. */
    stream_destroy_locked(s);
    g_live_streams--;
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream h) {
  if (dst == NULL && n > 0) return CUDA_ERROR_INVALID_VALUE;
  return copy_async(dst, (const void*)(uintptr_t)src, n, h, src, dst);
}

API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream h) {
  if (src == NULL && n > 0) return CUDA_ERROR_INVALID_VALUE;
  return copy_async((void*)(uintptr_t)dst, src, n, h, dst, src);
}

API CUresult cuEventCreate(CUevent* event, unsigned int flags) {
  if (event == NULL || (flags & ~7u) != 0) return CUDA_ERROR_INVALID_VALUE;
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  if (t_current == NULL) return CUDA_ERROR_INVALID_CONTEXT;
  pthread_mutex_lock(&g_mu);
  CUresult rc = t_current->sticky_error;
  struct fake_event* ev = NULL;
  if (rc == CUDA_SUCCESS) {
    ev = g_free_events;
    if (ev != NULL) {
      g_free_events = ev->next_free;
      memset(ev, 0, sizeof(*ev));
    } else {
      ev = (struct fake_event*)calloc(1, sizeof(*ev));
    }
    if (ev == NULL) {
      rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
      ev->magic = EVENT_MAGIC;
      ev->ctx = t_current;
      if (++g_live_events > g_max_live_events) g_max_live_events = g_live_events;
    }
  }
  pthread_mutex_unlock(&g_mu);
  *event = ev;
  return rc;
}

API CUresult cuEventDestroy_v2(CUevent ev) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  pthread_mutex_lock(&g_mu);
  CUresult rc = CUDA_ERROR_INVALID_HANDLE;
  if (event_valid_locked(ev)) {
    /* Like CUDA: queued records and waits that use it still complete. */
    ev->magic = DEAD_MAGIC;
    ev->destroyed = 1;
    g_live_events--;
    ev->refs++;
    event_unref_locked(ev);
    rc = CUDA_SUCCESS;
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

API CUresult cuEventRecord(CUevent ev, CUstream h) {
  pthread_mutex_lock(&g_mu);
  struct fake_stream* s = NULL;
  CUresult rc = stream_for_call_locked(h, &s);
  if (rc == CUDA_SUCCESS && !event_valid_locked(ev)) rc = CUDA_ERROR_INVALID_HANDLE;
  if (rc == CUDA_SUCCESS && ev->ctx != s->ctx) rc = CUDA_ERROR_INVALID_HANDLE;
  if (rc == CUDA_SUCCESS) {
    struct op* op = (struct op*)calloc(1, sizeof(*op));
    if (op == NULL) {
      rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
      op->kind = OP_RECORD;
      op->ev = ev;
      op->seq = ++ev->recorded;
      ev->refs++;
      rc = enqueue_locked(s, op);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

API CUresult cuStreamWaitEvent(CUstream h, CUevent ev, unsigned int flags) {
  if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
  pthread_mutex_lock(&g_mu);
  struct fake_stream* s = NULL;
  CUresult rc = stream_for_call_locked(h, &s);
  if (rc == CUDA_SUCCESS && !event_valid_locked(ev)) rc = CUDA_ERROR_INVALID_HANDLE;
  /* An event never recorded is complete: nothing to wait for. */
  if (rc == CUDA_SUCCESS && ev->recorded > ev->completed) {
    struct op* op = (struct op*)calloc(1, sizeof(*op));
    if (op == NULL) {
      rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
      op->kind = OP_WAIT;
      op->ev = ev;
      op->seq = ev->recorded;
      ev->refs++;
      rc = enqueue_locked(s, op);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

API CUresult cuEventSynchronize(CUevent ev) {
  if (!initialized()) return CUDA_ERROR_NOT_INITIALIZED;
  pthread_mutex_lock(&g_mu);
  CUresult rc = CUDA_ERROR_INVALID_HANDLE;
  if (event_valid_locked(ev)) {
    unsigned long target = ev->recorded;
    ev->refs++; /* keeps the event alive if another thread destroys it */
    while (ev->completed < target && !ev->ctx->sticky_error) pthread_cond_wait(&g_cond, &g_mu);
    rc = ev->ctx->sticky_error;
    event_unref_locked(ev);
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

static const char* error_name(CUresult e) {
  switch (e) {
    case CUDA_SUCCESS: return "CUDA_SUCCESS";
    case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case CUDA_ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case CUDA_ERROR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    case CUDA_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case CUDA_ERROR_ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
  }
  return NULL;
}

static const char* error_string(CUresult e) {
  switch (e) {
    case CUDA_SUCCESS: return "no error";
    case CUDA_ERROR_INVALID_VALUE: return "invalid argument";
    case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
    case CUDA_ERROR_NOT_INITIALIZED: return "initialization error";
    case CUDA_ERROR_NO_DEVICE: return "no CUDA-capable device is detected";
    case CUDA_ERROR_INVALID_DEVICE: return "invalid device ordinal";
    case CUDA_ERROR_INVALID_CONTEXT: return "invalid device context";
    case CUDA_ERROR_INVALID_HANDLE: return "invalid resource handle";
    case CUDA_ERROR_ILLEGAL_ADDRESS: return "an illegal memory access was encountered";
  }
  return NULL;
}

/* Like the real driver, these work before cuInit and leave NULL for codes
 * they do not know. */
API CUresult cuGetErrorName(CUresult e, const char** s) {
  if (s == NULL) return CUDA_ERROR_INVALID_VALUE;
  *s = error_name(e);
  return *s != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

API CUresult cuGetErrorString(CUresult e, const char** s) {
  if (s == NULL) return CUDA_ERROR_INVALID_VALUE;
  *s = error_string(e);
  return *s != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* ---- test-only entry points ------------------------------------------------ */

/* Stalls `h` for `usec` microseconds, as a long kernel would. */
API CUresult fake_cuda_stream_sleep(CUstream h, long usec) {
  pthread_mutex_lock(&g_mu);
  struct fake_stream* s = NULL;
  CUresult rc = stream_for_call_locked(h, &s);
  if (rc == CUDA_SUCCESS) {
    struct op* op = (struct op*)calloc(1, sizeof(*op));
    if (op == NULL) {
      rc = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
      op->kind = OP_SLEEP;
      op->usec = usec;
      rc = enqueue_locked(s, op);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return rc;
}

static long read_counter(const long* c) {
  pthread_mutex_lock(&g_mu);
  long v = *c;
  pthread_mutex_unlock(&g_mu);
  return v;
}

API long fake_cuda_live_events(void) { return read_counter(&g_live_events); }
API long fake_cuda_max_live_events(void) { return read_counter(&g_max_live_events); }
API long fake_cuda_live_streams(void) { return read_counter(&g_live_streams); }
API long fake_cuda_live_host_allocs(void) { return read_counter(&g_live_host_allocs); }
API long fake_cuda_pageable_copies(void) { return read_counter(&g_pageable_copies); }
API long fake_cuda_copies(void) { return read_counter(&g_copies); }
/* cuMemFreeHost calls that freed memory a queued or running copy still used. */
API long fake_cuda_host_freed_in_use(void) { return read_counter(&g_host_freed_in_use); }

API int fake_cuda_primary_retains(int device) {
  if (device < 0 || device >= MAX_DEVICES) return -1;
  pthread_mutex_lock(&g_mu);
  int v = g_ctx[device].retains;
  pthread_mutex_unlock(&g_mu);
  return v;
}

/* Page-locked allocations made in the primary context of `device`. */
API long fake_cuda_host_allocs_in(int device) {
  if (device < 0 || device >= MAX_DEVICES) return -1;
  return read_counter(&g_ctx[device].host_allocs);
}
