/* A fixed set of worker threads that run one job, split by index, each time
 * they are asked. Index 0 always runs on the caller's thread, so a pool of
 * one thread starts no threads at all. Used by training (batch shards) and
 * by inference (frame stripes). */
#include "nn.h"

#include <pthread.h>
#include <stdlib.h>

struct ae_pool {
  ae_pool_fn fn;
  void *ctx;
  int count, active;
  pthread_t *threads;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  unsigned generation;
  int pending, quit;
};

typedef struct worker_arg {
  ae_pool *p;
  int index;
} worker_arg;

static void *
worker_main (void *arg)
{
  ae_pool *p = ((worker_arg *) arg)->p;
  int index = ((worker_arg *) arg)->index;
  free (arg);
  unsigned seen = 0;
  for (;;) {
    pthread_mutex_lock (&p->mu);
    while (p->generation == seen && !p->quit)
      pthread_cond_wait (&p->go, &p->mu);
    seen = p->generation;
    int quit = p->quit, busy = index < p->active;
    pthread_mutex_unlock (&p->mu);
    if (quit)
      return NULL;
    if (busy)
      p->fn (p->ctx, index);
    pthread_mutex_lock (&p->mu);
    if (--p->pending == 0)
      pthread_cond_signal (&p->done);
    pthread_mutex_unlock (&p->mu);
  }
}

ae_pool *
ae_pool_new (int threads, ae_pool_fn fn, void *ctx, ae_error *err)
{
  ae_pool *p = calloc (1, sizeof *p);
  if (!p || !(p->threads = calloc ((size_t) (threads > 1 ? threads : 1), sizeof *p->threads))) {
    free (p);
    ae_fail (err, AE_E_NOMEM, "out of memory");
    return NULL;
  }
  p->fn = fn;
  p->ctx = ctx;
  p->count = threads > 1 ? threads : 1;
  pthread_mutex_init (&p->mu, NULL);
  pthread_cond_init (&p->go, NULL);
  pthread_cond_init (&p->done, NULL);
  for (int k = 1; k < p->count; k++) {
    worker_arg *a = malloc (sizeof *a);
    if (a) {
      a->p = p;
      a->index = k;
    }
    if (!a || pthread_create (&p->threads[k], NULL, worker_main, a) != 0) {
      free (a);
      ae_fail (err, AE_E_NOMEM, "cannot start worker thread %d", k);
      ae_pool_free (p);
      return NULL;
    }
    p->started = k;
  }
  return p;
}

int
ae_pool_size (const ae_pool *p)
{
  return p->count;
}

void
ae_pool_run (ae_pool *p, int active)
{
  if (active > p->count)
    active = p->count;
  if (active <= 1) {
    if (active == 1)
      p->fn (p->ctx, 0);
    return;
  }
  pthread_mutex_lock (&p->mu);
  p->active = active;
  p->pending = p->count - 1;
  p->generation++;
  pthread_cond_broadcast (&p->go);
  pthread_mutex_unlock (&p->mu);
  p->fn (p->ctx, 0);
  pthread_mutex_lock (&p->mu);
  while (p->pending > 0)
    pthread_cond_wait (&p->done, &p->mu);
  pthread_mutex_unlock (&p->mu);
}

void
ae_pool_free (ae_pool *p)
{
  if (!p)
    return;
  pthread_mutex_lock (&p->mu);
  p->quit = 1;
  pthread_cond_broadcast (&p->go);
  pthread_mutex_unlock (&p->mu);
  for (int k = 1; k <= p->started; k++)
    pthread_join (p->threads[k], NULL);
  pthread_mutex_destroy (&p->mu);
  pthread_cond_destroy (&p->go);
  pthread_cond_destroy (&p->done);
  free (p->threads);
  free (p);
}
