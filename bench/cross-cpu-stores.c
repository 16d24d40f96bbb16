/* What a store costs on this machine when the memory was read by the
 * other CPU a moment before: the server writing a body into a block of
 * the shared region that the front end's writev read earlier.
 *
 *   cc -O2 -pthread -o /tmp/cross-cpu-stores bench/cross-cpu-stores.c
 *   for kb in 64 512 1024 2048 4096 8192 16384; do /tmp/cross-cpu-stores $kb; done
 *   /tmp/cross-cpu-stores 64 1     # RING_KB, then SECONDS (default 3)
 *
 * A writer pinned to CPU 0 fills 64 KB blocks in turn through a ring of
 * RING_KB of shared memory; a reader pinned to CPU 1 reads each block
 * after it is written, then hands the turn back. Prints the mean time of
 * one block's write and read over SECONDS. With RING_KB 64 every block
 * is written right after the other CPU read it; with a ring of a few MB
 * the lines have left that CPU's cache by then. BENCHMARKS.md, fifteenth
 * session. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define BLOCK (64 * 1024)

static char *ring;
static size_t blocks;
static atomic_long turn; /* 2k+1: block k written; 2k+2: block k read */
static double read_time;
static long reads;
static volatile uint64_t sink;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *reader(void *unused) {
    (void)unused;
    pin(1);
    for (long k = 0;; k++) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * k + 1) {
        }
        const char *p = ring + (size_t)(k % (long)blocks) * BLOCK;
        double t0 = now();
        uint64_t sum = 0;
        for (size_t i = 0; i < BLOCK; i += 8) sum += *(const uint64_t *)(p + i);
        sink = sum;
        read_time += now() - t0;
        reads++;
        atomic_store_explicit(&turn, 2 * k + 2, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv) {
    size_t ring_kb = argc > 1 ? (size_t)atol(argv[1]) : 64;
    if (ring_kb < 64) ring_kb = 64;
    double seconds = argc > 2 ? atof(argv[2]) : 3;
    if (!(seconds > 0)) seconds = 3;
    blocks = ring_kb * 1024 / BLOCK;
    size_t size = blocks * BLOCK;
    ring = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ring == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(ring, 1, size);
    pin(0);
    pthread_t t;
    pthread_create(&t, NULL, reader, NULL);
    double write_time = 0, start = now();
    long k = 0;
    while (now() - start < seconds) {
        char *p = ring + (size_t)(k % (long)blocks) * BLOCK;
        double t0 = now();
        memset(p, (int)k, BLOCK);
        write_time += now() - t0;
        atomic_store_explicit(&turn, 2 * k + 1, memory_order_release);
        while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * k + 2) {
        }
        k++;
    }
    printf("ring %6zu KB: write %.2f us, read %.2f us per 64 KB block\n", size / 1024,
           write_time / k * 1e6, read_time / reads * 1e6);
    return 0;
}
