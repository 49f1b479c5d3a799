/* Inference on one frame split into horizontal stripes, one per worker
 * thread. Each stripe also computes `halo` rows beyond its own on either
 * side, at least the model's receptive radius, so its own rows come out as
 * they would from the whole frame: zero padding at a stripe's cut edge only
 * reaches the rows it throws away.
 *
 * A stripe's activations must stay in cache: at 720p the denoiser's layers
 * read and write 7 MB each per stripe, and both cores waited on memory.
 * Models made of the layers rowstream.c runs go down the stripe a few rows
 * at a time there, no row computed twice (1.2-1.5x faster at 720p than the
 * pieces below); the others run in pieces of ~100 rows, one after the
 * other on one session, each computing its halo again (1.2-1.3x faster
 * than whole stripes; measured on the 2-core machine).
 *
 * Why not OpenBLAS's threads: at video sizes each layer is a GEMM of a few
 * output channels, and OpenBLAS wakes and synchronises its threads for every
 * one of them (a perf profile of 720p denoising showed a quarter of the
 * time in sched_yield). A stripe per thread synchronises once per frame. */
#include "nn.h"

#include <stdlib.h>
#include <string.h>

typedef struct stripe {
  int y0, y1;       /* output rows this stripe owns */
  ae_rowstream *stream; /* models that stream: the stripe's rows, else NULL */
  ae_session *s;    /* the others: for one piece */
  float *input;     /* C planes of one piece's rows */
} stripe;

struct ae_stripes {
  const ae_model *model;
  int h, w, count;
  int halo;         /* rows computed beyond a piece's own on either side */
  int piece;        /* most output rows per piece */
  int span;         /* rows every piece computes: piece + 2 halo, at most h */
  stripe *v;
  ae_pool *pool;
  const float *frame_in; /* the frame being processed */
  float *frame_out;
  ae_rows_fn rows_fn;    /* set: the pool runs this instead of the model */
  void *rows_ctx;
  ae_rows_fn after_fn;   /* set: called on each piece's rows once they are out */
  void *after_ctx;
};

/* Input rows an output row can depend on, on either side. */
static int
receptive_radius (const ae_model *m)
{
  double radius = 0.0, jump = 1.0; /* jump: input pixels per activation pixel */
  for (int i = 0; i < m->nlayers; i++) {
    const ae_layer *l = &m->layers[i];
    int reach = l->p > l->k - 1 - l->p ? l->p : l->k - 1 - l->p;
    if (l->kind == LAYER_CONV) {
      radius += reach * jump;
      jump *= l->s;
    } else if (l->kind == LAYER_DECONV) {
      radius += ((reach + l->s - 1) / l->s) * jump;
      jump /= l->s;
    } else if (l->kind == LAYER_SHUFFLE) {
      jump /= l->s;
    }
  }
  return (int) radius + 1;
}

/* Splits the rows into `count` stripes whose edges are multiples of the
 * model's size multiple, so every stripe samples the strided grid as the
 * whole frame does. */
static int
plan_stripes (ae_stripes *p, int threads)
{
  int mult = ae_model_size_multiple (p->model);
  int units = p->h / mult;
  int count = threads < units ? threads : units;
  if (!p->model->fully_conv || count < 1)
    count = 1;
  for (int k = 0; k < count; k++) {
    stripe *st = &p->v[k];
    st->y0 = k == 0 ? 0 : (int) ((long long) units * k / count) * mult;
    st->y1 = k == count - 1 ? p->h : (int) ((long long) units * (k + 1) / count) * mult;
  }
  return count;
}

/* Per input row of width w: the largest activation, all activations
 * written, and the convolutions' multiply-adds. */
typedef struct row_costs {
  double largest, written, macs;
} row_costs;

static row_costs
costs_per_row (const ae_model *m, int w)
{
  row_costs r = { m->in_c * (double) w, 0, 0 };
  double scale = 1.0; /* activation rows (and columns) per input row (column) */
  int c = m->in_c;
  for (int i = 0; i < m->nlayers; i++) {
    const ae_layer *l = &m->layers[i];
    if (l->kind == LAYER_CONV) {
      scale /= l->s;
      r.macs += (double) c * l->out_c * l->k * l->k * scale * scale * w;
      c = l->out_c;
    } else if (l->kind == LAYER_DECONV) {
      r.macs += (double) c * l->out_c * l->k * l->k * scale * scale * w;
      scale *= l->s;
      c = l->out_c;
    } else if (l->kind == LAYER_SHUFFLE) {
      scale *= l->s;
      c /= l->s * l->s;
    }
    double floats = c * scale * scale * w;
    r.written += floats;
    if (floats > r.largest)
      r.largest = floats;
  }
  return r;
}

/* Pieces pay where memory, not arithmetic, limits the model. Measured at
 * 720p on 2 threads: the fast denoiser (75 multiply-adds per activation
 * float written) ran 1.23x faster in pieces of 90 rows; the quality one
 * (190) ran 1.15x slower in pieces of 120 rows, its halos costing more
 * than the cache saved. */
enum { PIECE_MAX_MACS_PER_FLOAT = 120, PIECE_MIN_HALOS = 8 };

/* Pieces of about `rows` own rows, equal, none shorter than `rows`
 * (or the stripe). */
static void
set_pieces (ae_stripes *p, int rows, int longest)
{
  int mult = ae_model_size_multiple (p->model);
  rows = rows / mult * mult;
  if (rows < mult)
    rows = mult;
  int pieces = longest / rows > 1 ? longest / rows : 1;
  p->piece = ((longest + pieces - 1) / pieces + mult - 1) / mult * mult;
  p->span = p->piece + 2 * p->halo < p->h ? p->piece + 2 * p->halo : p->h;
}

/* Own rows per piece for this model: as many as keep the largest
 * activation within AE_STRIPE_PIECE_FLOATS, no fewer than PIECE_MIN_HALOS
 * halos; the whole stripe for arithmetic-bound models. */
static int
planned_rows (const ae_stripes *p, int longest)
{
  row_costs cost = costs_per_row (p->model, p->w);
  int rows = (int) ((double) AE_STRIPE_PIECE_FLOATS / cost.largest) - 2 * p->halo;
  if (cost.macs > PIECE_MAX_MACS_PER_FLOAT * cost.written)
    rows = longest;
  return rows > PIECE_MIN_HALOS * p->halo ? rows : PIECE_MIN_HALOS * p->halo;
}

/* Piece sizes: `rows` if positive (tests), else planned_rows; a dense
 * layer sees the whole frame, so no pieces, as no stripes. */
static void
plan_pieces (ae_stripes *p, int rows)
{
  int mult = ae_model_size_multiple (p->model);
  p->halo = (receptive_radius (p->model) + mult - 1) / mult * mult;
  int longest = 0;
  for (int k = 0; k < p->count; k++)
    if (p->v[k].y1 - p->v[k].y0 > longest)
      longest = p->v[k].y1 - p->v[k].y0;
  if (!p->model->fully_conv)
    rows = longest;
  else if (rows <= 0)
    rows = planned_rows (p, longest);
  set_pieces (p, rows, longest);
}

/* Output rows [y0, y1) from the span of rows starting at `top`. */
static void
run_piece (ae_stripes *p, const stripe *st, int top, int y0, int y1)
{
  int c = p->model->in_c;
  size_t plane = (size_t) p->h * p->w, part = (size_t) p->span * p->w;
  const float *in = p->frame_in;
  if (p->span < p->h) {
    for (int ch = 0; ch < c; ch++)
      memcpy (st->input + ch * part, p->frame_in + ch * plane + (size_t) top * p->w,
              part * sizeof (float));
    in = st->input;
  }
  const float *y = ae_session_forward (st->s, in);
  size_t skip = (size_t) (y0 - top) * p->w, own = (size_t) (y1 - y0) * p->w;
  for (int ch = 0; ch < c; ch++)
    memcpy (p->frame_out + ch * plane + (size_t) y0 * p->w, y + ch * part + skip,
            own * sizeof (float));
  if (p->after_fn)
    p->after_fn (p->after_ctx, y0, y1);
}

static void
run_stripe (void *ctx, int index)
{
  ae_stripes *p = ctx;
  const stripe *st = &p->v[index];
  if (p->rows_fn) {
    p->rows_fn (p->rows_ctx, st->y0, st->y1);
    return;
  }
  if (st->stream) {
    ae_rowstream_run (st->stream, p->frame_in, p->frame_out, p->after_fn, p->after_ctx);
    return;
  }
  for (int y0 = st->y0; y0 < st->y1; y0 += p->piece) {
    int y1 = y0 + p->piece < st->y1 ? y0 + p->piece : st->y1;
    /* The span around the piece, moved inside the frame at its edges
     * (where the model's zero padding is the frame's own). */
    int top = y0 - p->halo;
    if (top + p->span > p->h)
      top = p->h - p->span;
    if (top < 0)
      top = 0;
    run_piece (p, st, top, y0, y1);
  }
}

/* A stripe's row stream (`streamed`) or its session for pieces. */
static ae_status
init_stripe (ae_stripes *p, stripe *st, int streamed, int piece_rows, ae_error *err)
{
  if (streamed) {
    st->stream = ae_rowstream_new (p->model, p->h, p->w, st->y0, st->y1, piece_rows, err);
    if (!st->stream)
      return err ? err->status : AE_E_NOMEM;
    p->piece = ae_rowstream_chunk (st->stream);
    return AE_OK;
  }
  st->s = ae_session_new (p->model, 1, p->span, p->w, err);
  if (!st->s)
    return err ? err->status : AE_E_SHAPE;
  if (p->span < p->h
      && !(st->input = malloc ((size_t) p->model->in_c * p->span * p->w * sizeof (float))))
    return ae_fail (err, AE_E_NOMEM, "out of memory for %d frame stripes", p->count);
  return AE_OK;
}

ae_stripes *
ae_stripes_new (const ae_model *model, int height, int width, int threads, ae_error *err)
{
  return ae_stripes_new_pieces (model, height, width, threads, 0, err);
}

ae_stripes *
ae_stripes_new_pieces (const ae_model *model, int height, int width, int threads, int piece_rows,
                       ae_error *err)
{
  if (!model || height <= 0 || width <= 0 || threads < 1 || threads > 64) {
    ae_fail (err, AE_E_ARG, "bad stripes: %dx%d frame, %d threads", width, height, threads);
    return NULL;
  }
  int mult = ae_model_size_multiple (model);
  if (model->fully_conv && (height % mult || width % mult)) {
    ae_fail (err, AE_E_SHAPE, "this model takes frame sizes that are multiples of %d, got %dx%d",
             mult, width, height);
    return NULL;
  }
  ae_stripes *p = calloc (1, sizeof *p);
  if (!p || !(p->v = calloc ((size_t) threads, sizeof *p->v))) {
    free (p);
    ae_fail (err, AE_E_NOMEM, "out of memory");
    return NULL;
  }
  p->model = model;
  p->h = height;
  p->w = width;
  p->count = plan_stripes (p, threads);
  int streamed = ae_rowstream_fits (model, height, width);
  if (!streamed) /* a stream plans its own steps */
    plan_pieces (p, piece_rows);
  ae_status st = AE_OK;
  for (int k = 0; st == AE_OK && k < p->count; k++)
    st = init_stripe (p, &p->v[k], streamed, piece_rows, err);
  size_t out = (size_t) model->in_c * height * width;
  if (st == AE_OK && !(p->frame_out = malloc (out * sizeof (float))))
    st = ae_fail (err, AE_E_NOMEM, "out of memory for a %dx%d frame", width, height);
  if (st == AE_OK && !(p->pool = ae_pool_new (p->count, run_stripe, p, err)))
    st = AE_E_NOMEM;
  if (st != AE_OK) {
    ae_stripes_free (p);
    return NULL;
  }
  return p;
}

int
ae_stripes_count (const ae_stripes *p)
{
  return p->count;
}

int
ae_stripes_piece_rows (const ae_stripes *p)
{
  return p->piece;
}

void
ae_stripes_set_noise (ae_stripes *p, float sigma)
{
  for (int k = 0; k < p->count; k++) {
    if (p->v[k].stream)
      ae_rowstream_set_noise (p->v[k].stream, sigma);
    else
      ae_session_set_noise (p->v[k].s, &sigma);
  }
}

const float *
ae_stripes_forward (ae_stripes *p, const float *input)
{
  return ae_stripes_forward_rows (p, input, NULL, NULL);
}

const float *
ae_stripes_forward_rows (ae_stripes *p, const float *input, ae_rows_fn fn, void *ctx)
{
  p->frame_in = input;
  p->after_fn = fn;
  p->after_ctx = ctx;
  ae_pool_run (p->pool, p->count);
  p->after_fn = NULL;
  return p->frame_out;
}

const float *
ae_stripes_output (const ae_stripes *p)
{
  return p->frame_out;
}

void
ae_stripes_for_rows (ae_stripes *p, ae_rows_fn fn, void *ctx)
{
  p->rows_fn = fn;
  p->rows_ctx = ctx;
  ae_pool_run (p->pool, p->count);
  p->rows_fn = NULL;
}

void
ae_stripes_free (ae_stripes *p)
{
  if (!p)
    return;
  ae_pool_free (p->pool);
  for (int k = 0; k < p->count; k++) {
    ae_rowstream_free (p->v[k].stream);
    ae_session_free (p->v[k].s);
    free (p->v[k].input);
  }
  free (p->frame_out);
  free (p->v);
  free (p);
}
