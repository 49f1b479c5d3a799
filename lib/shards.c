/* Data-parallel training steps: a batch is split into shards, one per
 * worker thread, each with its own session, gradient buffer and copy of the
 * batch-norm running statistics. Workers run forward, loss and backward at
 * once; the caller's thread then sums their gradients and averages their
 * statistics, so the optimiser sees one batch.
 *
 * On two cores this beats letting OpenBLAS split each small GEMM, whose
 * threads must wake and synchronise a dozen times per batch. Batch norm
 * then normalises with per-shard statistics, as PyTorch's DataParallel
 * does. With one worker there are no threads at all. */
#include "nn.h"

#include <stdlib.h>
#include <string.h>

typedef struct shard {
  ae_session *s;
  float *grads, *stats, *target, *gout, *scratch;
  int n;          /* samples this step */
  float weight;   /* n / batch: this shard's share of the batch mean */
  double loss;
} shard;

struct ae_shards {
  ae_model *m;
  ae_loss loss;
  int window;
  int count, active;
  float kl_scale;
  shard *v;
  ae_pool *pool;
};

static void
shard_step (ae_shards *p, shard *w)
{
  ae_session *s = w->s;
  const float *y = ae_session_run_cnhw (s, s->act[0], -1);
  size_t planes = (size_t) w->n * p->m->in_c;
  double loss = ae_loss_eval (p->loss, y, w->target, planes, s->h, s->w, p->window, w->gout,
                              w->scratch);
  for (size_t i = 0; i < s->numel[p->m->nlayers]; i++)
    w->gout[i] *= w->weight;
  w->loss = w->weight * loss + (p->kl_scale > 0.0f ? p->kl_scale * ae_session_kl (s) : 0.0);
  memset (w->grads, 0, p->m->nparams * sizeof (float));
  ae_session_backward (s, w->gout, w->grads, p->kl_scale);
}

static void
run_shard (void *ctx, int index)
{
  ae_shards *p = ctx;
  shard_step (p, &p->v[index]);
}

static ae_status
shard_init (ae_shards *p, shard *w, int k, int capacity, int h, int ww, uint64_t seed,
            ae_error *err)
{
  ae_model *m = p->m;
  size_t sample = (size_t) m->in_c * h * ww;
  w->s = ae_session_new_mode (m, capacity, h, ww, 1, err);
  if (!w->s)
    return err ? err->status : AE_E_SHAPE;
  ae_rng_seed (&w->s->rng, seed ^ (0x76616eULL + (uint64_t) k));
  /* Shard 0 updates the model's own statistics and gradient buffer. */
  w->stats = k == 0 ? m->stats : malloc ((m->nstats ? m->nstats : 1) * sizeof (float));
  w->grads = malloc ((m->nparams ? m->nparams : 1) * sizeof (float));
  w->target = malloc ((size_t) capacity * sample * sizeof (float));
  w->gout = malloc ((size_t) capacity * sample * sizeof (float));
  w->scratch = malloc (ae_loss_scratch_floats (p->loss, h, ww) * sizeof (float));
  if (!w->stats || !w->grads || !w->target || !w->gout || !w->scratch)
    return ae_fail (err, AE_E_NOMEM, "out of memory for training");
  if (k)
    memcpy (w->stats, m->stats, m->nstats * sizeof (float));
  w->s->stats = w->stats;
  return AE_OK;
}

ae_shards *
ae_shards_new (ae_model *m, int workers, int batch, int h, int w, ae_loss loss, int window,
               uint64_t seed, ae_error *err)
{
  if (workers > batch)
    workers = batch;
  ae_shards *p = calloc (1, sizeof *p);
  if (!p || !(p->v = calloc ((size_t) workers, sizeof *p->v))) {
    free (p);
    ae_fail (err, AE_E_NOMEM, "out of memory");
    return NULL;
  }
  p->m = m;
  p->loss = loss;
  p->window = window;
  p->count = workers;
  int capacity = (batch + workers - 1) / workers;
  ae_status st = AE_OK;
  for (int k = 0; st == AE_OK && k < workers; k++)
    st = shard_init (p, &p->v[k], k, capacity, h, w, seed, err);
  if (st == AE_OK && !(p->pool = ae_pool_new (workers, run_shard, p, err)))
    st = AE_E_NOMEM;
  if (st != AE_OK) {
    ae_shards_free (p);
    return NULL;
  }
  return p;
}

void
ae_shards_free (ae_shards *p)
{
  if (!p)
    return;
  ae_pool_free (p->pool);
  for (int k = 0; k < p->count; k++) {
    shard *w = &p->v[k];
    ae_session_free (w->s);
    if (k)
      free (w->stats);
    free (w->grads);
    free (w->target);
    free (w->gout);
    free (w->scratch);
  }
  free (p->v);
  free (p);
}

int
ae_shards_split (ae_shards *p, int n, ae_error *err)
{
  p->active = n < p->count ? n : p->count;
  for (int k = 0; k < p->count; k++) {
    shard *w = &p->v[k];
    w->n = k < p->active ? n / p->active + (k < n % p->active) : 0;
    w->weight = (float) w->n / (float) n;
    if (w->n && ae_session_reshape (w->s, w->n, w->s->h, w->s->w, err) != AE_OK)
      return -1;
  }
  return p->active;
}

void
ae_shards_buffers (ae_shards *p, int k, int *n, float **input, float **target, float **noise)
{
  *n = p->v[k].n;
  *noise = p->v[k].s->noise;
  *input = p->v[k].s->act[0];
  *target = p->v[k].target;
}

/* Averages the shards' running statistics: each moved (1 - momentum) of the
 * way from the common old value towards its shard's batch statistic, so the
 * mean equals one update towards the mean statistic. */
static void
merge_stats (ae_shards *p)
{
  ae_model *m = p->m;
  for (size_t i = 0; i < m->nstats; i++) {
    double s = 0.0;
    for (int k = 0; k < p->active; k++)
      s += p->v[k].stats[i];
    m->stats[i] = (float) (s / p->active);
  }
  for (int k = 1; k < p->count; k++)
    memcpy (p->v[k].stats, m->stats, m->nstats * sizeof (float));
}

double
ae_shards_step (ae_shards *p, float kl_scale, float *grads)
{
  p->kl_scale = kl_scale;
  ae_pool_run (p->pool, p->active);
  double loss = 0.0;
  size_t np = p->m->nparams;
  memcpy (grads, p->v[0].grads, np * sizeof (float));
  for (int k = 0; k < p->active; k++) {
    loss += p->v[k].loss;
    if (k > 0)
      for (size_t i = 0; i < np; i++)
        grads[i] += p->v[k].grads[i];
  }
  if (p->active > 1)
    merge_stats (p);
  return loss;
}
