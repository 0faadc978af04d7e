// fakecuda emulates, in host memory, the part of the CUDA driver API that
// server/cuda calls, so that the cuda backend's own logic (threads,
// ordering, staging, waits, errors) can be tested on machines without a
// GPU. It is a test double, not a CUDA implementation: it runs no kernels,
// and "device memory" is host memory mapped at the reserved addresses.
//
// Model: every stream has a queue and a worker thread; host functions run
// on one callback thread per context, as the driver's do; the legacy
// stream of a context synchronizes with its blocking streams through
// implicit waits inserted at enqueue. One mutex guards all state.
//
// Environment: FAKECUDA_DEVICES (default 2), FAKECUDA_MEMORY in MiB
// (default 1024).

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

enum {
	OK = 0,
	INVALID_VALUE = 1,
	OUT_OF_MEMORY = 2,
	NOT_INITIALIZED = 3,
	INVALID_DEVICE = 101,
	INVALID_CONTEXT = 201,
	INVALID_HANDLE = 400,
	NOT_READY = 600,
	NOT_SUPPORTED = 801,
};

#define GRAN (2ull << 20)
#define MAXDEV 8

enum { OP_MEMSET, OP_COPY, OP_HOSTFN, OP_RECORD, OP_WAITEV, OP_WAITSTREAM, OP_WAITVALUE };

typedef struct event event;
typedef struct stream stream;
typedef struct ctx ctx;

typedef struct op {
	int kind;
	struct op *next;
	uint64_t dst, src, n;
	uint32_t val, elem;
	void (*fn)(void *);
	void *ud;
	event *ev;
	uint64_t id;
	stream *ws;
	uint64_t target;
	int cbdone;
} op;

struct event {
	unsigned flags;
	uint64_t rec;     // records issued
	uint8_t *done;    // done[i]: record i completed
	uint64_t cap;
	uint64_t timeid;  // the record whose time t holds
	double t;
};

struct stream {
	ctx *c;
	int legacy, blocking;
	op *head, *tail;
	uint64_t enq, done;
	int destroyed;
	stream *next; // in the context's list
};

struct ctx {
	int dev, refs;
	stream *legacy;
	stream *streams;
	op *cbhead, *cbtail;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int inited, ndev = 2;
static uint64_t devmem = 1024ull << 20;
static uint64_t used[MAXDEV];
static ctx *ctxs[MAXDEV];
static __thread ctx *cur;

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *worker(void *arg);
static void *callbacks(void *arg);

static stream *new_stream(ctx *c, int legacy, int blocking) {
	stream *s = calloc(1, sizeof *s);
	s->c = c;
	s->legacy = legacy;
	s->blocking = blocking;
	s->next = c->streams;
	c->streams = s;
	pthread_t t;
	pthread_create(&t, NULL, worker, s);
	pthread_detach(t);
	return s;
}

static int evdone(event *e, uint64_t id) { return id == 0 || (id <= e->cap && e->done[id - 1]); }

static int ready(op *o) {
	switch (o->kind) {
	case OP_WAITSTREAM:
		return o->ws->done >= o->target;
	case OP_WAITEV:
		return evdone(o->ev, o->id);
	case OP_WAITVALUE:
		return (int32_t)(__atomic_load_n((uint32_t *)(uintptr_t)o->dst, __ATOMIC_ACQUIRE) - o->val) >= 0;
	}
	return 1;
}

static void *worker(void *arg) {
	stream *s = arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (s->head == NULL && !s->destroyed) {
			pthread_cond_wait(&cv, &mu);
		}
		if (s->head == NULL) {
			break;
		}
		op *o = s->head;
		if (!ready(o)) {
			if (o->kind == OP_WAITVALUE) {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += 50000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&cv, &mu, &ts);
			} else {
				pthread_cond_wait(&cv, &mu);
			}
			continue;
		}
		switch (o->kind) {
		case OP_MEMSET:
			pthread_mutex_unlock(&mu);
			for (uint64_t i = 0; i < o->n; i++) {
				memcpy((char *)(uintptr_t)o->dst + i * o->elem, &o->val, o->elem);
			}
			pthread_mutex_lock(&mu);
			break;
		case OP_COPY:
			pthread_mutex_unlock(&mu);
			memmove((void *)(uintptr_t)o->dst, (void *)(uintptr_t)o->src, o->n);
			pthread_mutex_lock(&mu);
			break;
		case OP_HOSTFN: {
			ctx *c = s->c;
			o->cbdone = 0;
			op *cb = calloc(1, sizeof *cb);
			*cb = *o;
			cb->next = NULL;
			cb->ud = o->ud;
			cb->fn = o->fn;
			cb->ws = (stream *)o; // back pointer for completion
			if (c->cbtail) {
				c->cbtail->next = cb;
			} else {
				c->cbhead = cb;
			}
			c->cbtail = cb;
			pthread_cond_broadcast(&cv);
			while (!o->cbdone) {
				pthread_cond_wait(&cv, &mu);
			}
			break;
		}
		case OP_RECORD:
			o->ev->done[o->id - 1] = 1;
			if (o->id > o->ev->timeid) {
				o->ev->timeid = o->id;
				o->ev->t = now();
			}
			break;
		}
		s->head = o->next;
		if (s->head == NULL) {
			s->tail = NULL;
		}
		s->done++;
		free(o);
		pthread_cond_broadcast(&cv);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

static void *callbacks(void *arg) {
	ctx *c = arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (c->cbhead == NULL) {
			pthread_cond_wait(&cv, &mu);
		}
		op *cb = c->cbhead;
		c->cbhead = cb->next;
		if (c->cbhead == NULL) {
			c->cbtail = NULL;
		}
		pthread_mutex_unlock(&mu);
		cb->fn(cb->ud);
		pthread_mutex_lock(&mu);
		((op *)cb->ws)->cbdone = 1;
		free(cb);
		pthread_cond_broadcast(&cv);
	}
	return NULL;
}

static void push(stream *s, op *o) {
	o->next = NULL;
	if (s->tail) {
		s->tail->next = o;
	} else {
		s->head = o;
	}
	s->tail = o;
	s->enq++;
}

static void wait_for(stream *s, stream *on) {
	if (on != s && on->enq > on->done) {
		op *w = calloc(1, sizeof *w);
		w->kind = OP_WAITSTREAM;
		w->ws = on;
		w->target = on->enq;
		push(s, w);
	}
}

// enqueue adds o to s with the legacy stream's implicit synchronization.
// Caller holds mu.
static void enqueue(stream *s, op *o) {
	if (s->legacy) {
		for (stream *b = s->c->streams; b; b = b->next) {
			if (b->blocking && !b->legacy) {
				wait_for(s, b);
			}
		}
	} else if (s->blocking) {
		wait_for(s, s->c->legacy);
	}
	push(s, o);
	pthread_cond_broadcast(&cv);
}

static stream *S(void *h) { return h ? (stream *)h : (cur ? cur->legacy : NULL); }

static CUresult add(void *h, op *o) {
	pthread_mutex_lock(&mu);
	stream *s = S(h);
	if (s == NULL || s->destroyed) {
		pthread_mutex_unlock(&mu);
		free(o);
		return s ? INVALID_HANDLE : INVALID_CONTEXT;
	}
	enqueue(s, o);
	pthread_mutex_unlock(&mu);
	return OK;
}

static op *mk(int kind) {
	op *o = calloc(1, sizeof *o);
	o->kind = kind;
	return o;
}

CUresult cuInit(unsigned int flags) {
	const char *e = getenv("FAKECUDA_DEVICES");
	if (e) {
		ndev = atoi(e);
	}
	if (ndev < 0 || ndev > MAXDEV) {
		ndev = 2;
	}
	e = getenv("FAKECUDA_MEMORY");
	if (e) {
		devmem = strtoull(e, NULL, 10) << 20;
	}
	inited = 1;
	return OK;
}

CUresult cuDriverGetVersion(int *v) {
	*v = 13000;
	return OK;
}

CUresult cuDeviceGetCount(int *n) {
	if (!inited) {
		return NOT_INITIALIZED;
	}
	*n = ndev;
	return OK;
}

CUresult cuDeviceGet(CUdevice *d, int i) {
	if (i < 0 || i >= ndev) {
		return INVALID_DEVICE;
	}
	*d = i;
	return OK;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice d) {
	snprintf(name, len, "Fake GPU %d", d);
	return OK;
}

CUresult cuDeviceGetUuid_v2(unsigned char *u, CUdevice d) {
	for (int i = 0; i < 16; i++) {
		u[i] = (unsigned char)(0x10 * d + i);
	}
	return OK;
}

CUresult cuDeviceGetAttribute(int *v, int attr, CUdevice d) {
	/* A driver refuses the numbers it does not know: past the last one,
	 * and a retired one. */
	if (attr <= 0 || attr > 147 || attr == 92) return INVALID_VALUE;
	switch (attr) {
	case 75: *v = 9; break;
	case 76: *v = 0; break;
	case 16: *v = 132; break;
	case 33: *v = 0x18 + 0x20 * d; break; /* the bus of cuDeviceGetPCIBusId */
	case 131: *v = -1; break;             /* NUMA id: none */
	default: *v = 1; break;
	}
	return OK;
}

CUresult cuDeviceTotalMem_v2(size_t *n, CUdevice d) {
	*n = devmem;
	return OK;
}

CUresult cuDeviceGetPCIBusId(char *s, int len, CUdevice d) {
	snprintf(s, len, "0000:%02x:00.0", 0x18 + 0x20 * d);
	return OK;
}

CUresult cuDeviceCanAccessPeer(int *can, CUdevice a, CUdevice b) {
	*can = a != b;
	return OK;
}

CUresult cuDevicePrimaryCtxRetain(void **c, CUdevice d) {
	if (d < 0 || d >= ndev) {
		return INVALID_DEVICE;
	}
	pthread_mutex_lock(&mu);
	if (ctxs[d] == NULL) {
		ctx *x = calloc(1, sizeof *x);
		x->dev = d;
		x->legacy = new_stream(x, 1, 1);
		pthread_t t;
		pthread_create(&t, NULL, callbacks, x);
		pthread_detach(t);
		ctxs[d] = x;
	}
	ctxs[d]->refs++;
	*c = ctxs[d];
	pthread_mutex_unlock(&mu);
	return OK;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) {
	pthread_mutex_lock(&mu);
	if (ctxs[d]) {
		ctxs[d]->refs--;
	}
	pthread_mutex_unlock(&mu);
	return OK;
}

CUresult cuCtxSetCurrent(void *c) {
	cur = c;
	return OK;
}

CUresult cuCtxGetDevice(CUdevice *d) {
	if (!cur) {
		return INVALID_CONTEXT;
	}
	*d = cur->dev;
	return OK;
}

CUresult cuCtxSynchronize(void) {
	if (!cur) {
		return INVALID_CONTEXT;
	}
	pthread_mutex_lock(&mu);
	for (stream *s = cur->streams; s; s = s->next) {
		uint64_t t = s->enq;
		while (s->done < t) {
			pthread_cond_wait(&cv, &mu);
		}
	}
	pthread_mutex_unlock(&mu);
	return OK;
}

CUresult cuCtxEnablePeerAccess(void *peer, unsigned int flags) { return OK; }

CUresult cuMemAddressReserve(CUdeviceptr *p, size_t size, size_t align, CUdeviceptr addr, unsigned long long flags) {
	if (size == 0 || size % GRAN) {
		return INVALID_VALUE;
	}
	int mf = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	void *m = MAP_FAILED;
	if (addr) {
		m = mmap((void *)(uintptr_t)addr, size, PROT_NONE, mf | MAP_FIXED_NOREPLACE, -1, 0);
	}
	if (m == MAP_FAILED) {
		m = mmap(NULL, size, PROT_NONE, mf, -1, 0);
	}
	if (m == MAP_FAILED) {
		return OUT_OF_MEMORY;
	}
	*p = (uintptr_t)m;
	return OK;
}

CUresult cuMemAddressFree(CUdeviceptr p, size_t size) { return munmap((void *)(uintptr_t)p, size) ? INVALID_VALUE : OK; }

typedef struct {
	int fd, dev;
	size_t size;
} handle;

typedef struct {
	int type, handleTypes;
	struct {
		int type, id;
	} loc;
	void *win32;
	unsigned char flags[8];
} prop;

CUresult cuMemCreate(unsigned long long *h, size_t size, const prop *pr, unsigned long long flags) {
	if (size == 0 || size % GRAN || pr->type != 1 || pr->loc.type != 1 || pr->loc.id < 0 || pr->loc.id >= ndev) {
		return INVALID_VALUE;
	}
	pthread_mutex_lock(&mu);
	if (used[pr->loc.id] + size > devmem) {
		pthread_mutex_unlock(&mu);
		return OUT_OF_MEMORY;
	}
	used[pr->loc.id] += size;
	pthread_mutex_unlock(&mu);
	int fd = memfd_create("fakecuda", 0);
	if (fd < 0 || ftruncate(fd, size) != 0) {
		return OUT_OF_MEMORY;
	}
	handle *x = calloc(1, sizeof *x);
	x->fd = fd;
	x->dev = pr->loc.id;
	x->size = size;
	*h = (uintptr_t)x;
	return OK;
}

CUresult cuMemRelease(unsigned long long h) {
	handle *x = (handle *)(uintptr_t)h;
	close(x->fd);
	pthread_mutex_lock(&mu);
	used[x->dev] -= x->size;
	pthread_mutex_unlock(&mu);
	free(x);
	return OK;
}

CUresult cuMemMap(CUdeviceptr p, size_t size, size_t off, unsigned long long h, unsigned long long flags) {
	handle *x = (handle *)(uintptr_t)h;
	if (off + size > x->size) {
		return INVALID_VALUE;
	}
	void *m = mmap((void *)(uintptr_t)p, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, x->fd, off);
	return m == MAP_FAILED ? INVALID_VALUE : OK;
}

CUresult cuMemUnmap(CUdeviceptr p, size_t size) {
	void *m = mmap((void *)(uintptr_t)p, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	return m == MAP_FAILED ? INVALID_VALUE : OK;
}

CUresult cuMemSetAccess(CUdeviceptr p, size_t size, const void *desc, size_t count) { return count ? OK : INVALID_VALUE; }

CUresult cuMemGetAllocationGranularity(size_t *g, const prop *pr, int option) {
	*g = GRAN;
	return OK;
}

CUresult cuMemGetInfo_v2(size_t *f, size_t *t) {
	if (!cur) {
		return INVALID_CONTEXT;
	}
	*f = devmem - used[cur->dev];
	*t = devmem;
	return OK;
}

static CUresult memset_op(CUdeviceptr dst, uint32_t v, size_t n, uint32_t elem, void *s) {
	op *o = mk(OP_MEMSET);
	o->dst = dst;
	o->val = v;
	o->n = n;
	o->elem = elem;
	return add(s, o);
}

CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void *s) { return memset_op(d, v, n, 1, s); }
CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, void *s) { return memset_op(d, v, n, 2, s); }
CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, void *s) { return memset_op(d, v, n, 4, s); }

static CUresult copy_op(uint64_t dst, uint64_t src, size_t n, void *s) {
	op *o = mk(OP_COPY);
	o->dst = dst;
	o->src = src;
	o->n = n;
	return add(s, o);
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *h, size_t n, void *s) { return copy_op(d, (uintptr_t)h, n, s); }
CUresult cuMemcpyDtoHAsync_v2(void *h, CUdeviceptr d, size_t n, void *s) { return copy_op((uintptr_t)h, d, n, s); }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr src, size_t n, void *s) { return copy_op(d, src, n, s); }
CUresult cuMemcpyAsync(CUdeviceptr d, CUdeviceptr src, size_t n, void *s) { return copy_op(d, src, n, s); }
CUresult cuMemcpyPeerAsync(CUdeviceptr d, void *dc, CUdeviceptr src, void *sc, size_t n, void *s) {
	return copy_op(d, src, n, s);
}

CUresult cuMemHostAlloc(void **p, size_t n, unsigned int flags) {
	return posix_memalign(p, 4096, n) ? OUT_OF_MEMORY : OK;
}

CUresult cuMemFreeHost(void *p) {
	free(p);
	return OK;
}

CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *d, void *p, unsigned int flags) {
	*d = (uintptr_t)p;
	return OK;
}

CUresult cuStreamCreateWithPriority(void **s, unsigned int flags, int prio) {
	if (!cur) {
		return INVALID_CONTEXT;
	}
	pthread_mutex_lock(&mu);
	*s = new_stream(cur, 0, !(flags & 1));
	pthread_mutex_unlock(&mu);
	return OK;
}

CUresult cuStreamDestroy_v2(void *h) {
	if (h == NULL) {
		return INVALID_HANDLE;
	}
	pthread_mutex_lock(&mu);
	stream *s = h;
	s->destroyed = 1; // the worker drains the queue, then exits; the stream stays listed (leaked)
	s->blocking = 0;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	return OK;
}

CUresult cuStreamSynchronize(void *h) {
	pthread_mutex_lock(&mu);
	stream *s = S(h);
	uint64_t t = s->enq;
	while (s->done < t) {
		pthread_cond_wait(&cv, &mu);
	}
	pthread_mutex_unlock(&mu);
	return OK;
}

CUresult cuStreamQuery(void *h) {
	pthread_mutex_lock(&mu);
	stream *s = S(h);
	CUresult r = s->done == s->enq ? OK : NOT_READY;
	pthread_mutex_unlock(&mu);
	return r;
}

CUresult cuStreamWaitEvent(void *h, event *e, unsigned int flags) {
	pthread_mutex_lock(&mu);
	uint64_t id = e->rec;
	int done = evdone(e, id);
	pthread_mutex_unlock(&mu);
	if (done) {
		return OK; // nothing to wait for: like the driver, queue nothing
	}
	op *o = mk(OP_WAITEV);
	o->ev = e;
	o->id = id;
	return add(h, o);
}

CUresult cuLaunchHostFunc(void *h, void (*fn)(void *), void *ud) {
	op *o = mk(OP_HOSTFN);
	o->fn = fn;
	o->ud = ud;
	return add(h, o);
}

CUresult cuStreamWaitValue32_v2(void *h, CUdeviceptr addr, unsigned int v, unsigned int flags) {
	if (flags != 0) {
		return NOT_SUPPORTED;
	}
	op *o = mk(OP_WAITVALUE);
	o->dst = addr;
	o->val = v;
	return add(h, o);
}

CUresult cuEventCreate(event **e, unsigned int flags) {
	if (flags & ~7u) {
		return INVALID_VALUE;
	}
	*e = calloc(1, sizeof **e);
	(*e)->flags = flags;
	return OK;
}

CUresult cuEventRecord(event *e, void *h) {
	op *o = mk(OP_RECORD);
	pthread_mutex_lock(&mu);
	stream *s = S(h);
	if (s == NULL || s->destroyed) {
		pthread_mutex_unlock(&mu);
		free(o);
		return INVALID_HANDLE;
	}
	if (e->rec == e->cap) {
		e->cap = e->cap ? 2 * e->cap : 8;
		e->done = realloc(e->done, e->cap);
		memset(e->done + e->rec, 0, e->cap - e->rec);
	}
	o->ev = e;
	o->id = ++e->rec;
	enqueue(s, o);
	pthread_mutex_unlock(&mu);
	return OK;
}

CUresult cuEventQuery(event *e) {
	pthread_mutex_lock(&mu);
	CUresult r = evdone(e, e->rec) ? OK : NOT_READY;
	pthread_mutex_unlock(&mu);
	return r;
}

CUresult cuEventSynchronize(event *e) {
	pthread_mutex_lock(&mu);
	uint64_t id = e->rec;
	while (!evdone(e, id)) {
		pthread_cond_wait(&cv, &mu);
	}
	pthread_mutex_unlock(&mu);
	return OK;
}

// Only the unversioned name: the loader must fall back to it.
CUresult cuEventElapsedTime(float *ms, event *a, event *b) {
	pthread_mutex_lock(&mu);
	CUresult r = OK;
	if ((a->flags | b->flags) & 2 || a->rec == 0 || b->rec == 0) {
		r = INVALID_HANDLE;
	} else if (!evdone(a, a->rec) || !evdone(b, b->rec)) {
		r = NOT_READY;
	} else {
		*ms = (float)((b->t - a->t) * 1000);
	}
	pthread_mutex_unlock(&mu);
	return r;
}

CUresult cuEventDestroy_v2(event *e) { return OK; } // leaked: queued waits may still read it

CUresult cuModuleLoadData(void **m, const void *image) { return NOT_SUPPORTED; }
CUresult cuModuleUnload(void *m) { return INVALID_HANDLE; }
CUresult cuModuleGetFunction(void **f, void *m, const char *name) { return INVALID_HANDLE; }
CUresult cuModuleGetGlobal_v2(CUdeviceptr *p, size_t *n, void *m, const char *name) { return INVALID_HANDLE; }
CUresult cuFuncGetAttribute(int *v, int attr, void *f) { return INVALID_HANDLE; }
CUresult cuFuncSetAttribute(void *f, int attr, int v) { return INVALID_HANDLE; }
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
	unsigned shmem, void *s, void **params, void **extra) {
	return NOT_SUPPORTED;
}
