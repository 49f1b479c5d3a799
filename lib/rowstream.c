/* A fully convolutional model run down a frame a few rows at a time, each
 * layer computing only rows it has not computed before.
 *
 * Pieces (stripes.c) keep a memory-bound model's activations in cache, but
 * each piece computes its halo again: at 720p the fast denoiser computed
 * 18 % more rows than it kept. Here every layer keeps, in a window of its
 * own, the rows the next layer still needs from the previous step, so no
 * row is computed twice within a stripe, each layer computes only the rows
 * the stripe's own output rows depend on, and the last layer writes
 * straight into the frame. Layers run on the row kernels of winograd.c and
 * direct.c, so models made of convolutions they run, noise layers (folded
 * into the convolution before), activations and pixel shuffles stream;
 * stripes.c runs the others in pieces. */
#include "nn.h"

#include <stdlib.h>
#include <string.h>

typedef enum op_kind { OP_WINO, OP_DIRECT, OP_ACT, OP_SHUFFLE } op_kind;

typedef struct op {
  op_kind kind;
  const ae_layer *l;
  const ae_layer *noise; /* folded into the convolution's bias, or NULL */
  int in[3], out[3];     /* C, H, W over the whole frame */
  float act_a, act_b;    /* the activation fused into the kernel: a*y + b*|y| */
  ae_act post;           /* the activation applied after it (AE_ACT_LINEAR: none) */
  wino_geom wg;
  conv_geom cg;
  weight_pack pack;      /* OP_WINO */
  float *bias;           /* noise folded: this frame's bias */
  int lo, hi;            /* output rows this stream computes */
  int done;              /* rows [lo, done) computed this frame */
  int first, cap;        /* buf holds rows [first, first + cap) */
  float *buf;            /* out[0] planes of cap rows; NULL for the last op (the frame) */
} op;

struct ae_rowstream {
  const ae_model *m;
  int count;
  op *ops;
  int chunk;             /* the last op's rows per step */
  int *need;             /* per op, during a step */
  int h, w;              /* the frame */
  float *scratch;
  float sigma;
};

/* The first input row output row r reads (below 0: padding). */
static int
first_input (const op *o, int r)
{
  if (o->kind == OP_WINO || o->kind == OP_DIRECT)
    return r * o->l->s - o->l->p;
  return o->kind == OP_SHUFFLE ? r / o->l->s : r;
}

/* One past the last input row output rows up to r read, within the input. */
static int
end_input (const op *o, int r)
{
  int end = r + 1;
  if (o->kind == OP_WINO || o->kind == OP_DIRECT)
    end = r * o->l->s - o->l->p + o->l->k;
  else if (o->kind == OP_SHUFFLE)
    end = r / o->l->s + 1;
  return end < o->in[1] ? end : o->in[1];
}

/* The convolution at layers[i] (with a noise layer after it folded in) as
 * an op; 0 when neither row kernel runs it. */
static int
conv_op (const ae_model *m, int i, op *o)
{
  const ae_layer *l = &m->layers[i], *next = i + 1 < m->nlayers ? &m->layers[i + 1] : NULL;
  float a, b;
  if (next && next->kind == LAYER_NOISE && l->act == AE_ACT_LINEAR
      && act_as_abs_form (next->act, next->alpha, &a, &b)) {
    o->noise = next;
    o->act_a = a;
    o->act_b = b;
  } else if (act_as_abs_form (l->act, l->alpha, &o->act_a, &o->act_b)) {
    o->post = AE_ACT_LINEAR;
  } else {
    o->act_a = 1.0f;
    o->act_b = 0.0f;
    o->post = l->act;
  }
  if (layer_wino_geom (l, o->in, o->out, &o->wg)) {
    o->kind = OP_WINO;
    return 1;
  }
  o->cg = (conv_geom) { o->in[0], o->in[1], o->in[2], l->k, l->s, l->p, o->out[1], o->out[2], 1 };
  o->kind = OP_DIRECT;
  return l->k > 1 && ae_direct_conv_fits (&o->cg);
}

/* The model as ops over an h x w frame; returns how many, 0 if it does not stream. */
static int
build_ops (const ae_model *m, int h, int w, op *ops)
{
  int shape[3] = { m->in_c, h, w }, count = 0;
  const int net_in[3] = { m->in_c, h, w };
  for (int i = 0; i < m->nlayers; i++) {
    const ae_layer *l = &m->layers[i];
    op *o = &ops[count++];
    *o = (op) { .l = l, .post = AE_ACT_LINEAR };
    memcpy (o->in, shape, sizeof shape);
    if (ae_layer_out_shape (l, shape, net_in, o->out, NULL) != AE_OK)
      return 0;
    if (l->kind == LAYER_CONV) {
      if (!conv_op (m, i, o))
        return 0;
      i += o->noise != NULL;
    } else if (l->kind == LAYER_ACT) {
      o->kind = OP_ACT;
      o->post = l->act;
    } else if (l->kind == LAYER_SHUFFLE) {
      o->kind = OP_SHUFFLE;
      o->post = l->act;
    } else {
      return 0;
    }
    memcpy (shape, o->out, sizeof shape);
  }
  return count; /* ending in the frame's shape, as every model does (model.c) */
}

int
ae_rowstream_fits (const ae_model *m, int h, int w)
{
  if (!m->fully_conv || m->nlayers < 1)
    return 0;
  op *ops = calloc ((size_t) m->nlayers, sizeof *ops);
  int fits = ops && build_ops (m, h, w, ops) > 0;
  free (ops);
  return fits;
}

/* Output rows each op computes for the last op's rows [y0, y1). */
static void
plan_rows (ae_rowstream *r, int y0, int y1)
{
  op *last = &r->ops[r->count - 1];
  last->lo = y0;
  last->hi = y1;
  for (int i = r->count - 1; i > 0; i--) {
    const op *o = &r->ops[i];
    op *prev = &r->ops[i - 1];
    int lo = first_input (o, o->lo);
    prev->lo = lo > 0 ? lo : 0;
    prev->hi = end_input (o, o->hi - 1);
  }
}

/* Rows of op i needed for the last op's rows up to `target`, in need[]. */
static void
rows_needed (const ae_rowstream *r, int target, int *need)
{
  need[r->count - 1] = target;
  for (int i = r->count - 1; i > 0; i--) {
    const op *o = &r->ops[i], *prev = &r->ops[i - 1];
    need[i - 1] = need[i] > o->lo ? end_input (o, need[i] - 1) : prev->lo;
    if (need[i - 1] > prev->hi)
      need[i - 1] = prev->hi;
  }
}

/* The first row of op i that op i + 1 still reads. */
static int
still_needed (const ae_rowstream *r, int i)
{
  const op *o = &r->ops[i], *next = &r->ops[i + 1];
  int keep = next->done < next->hi ? first_input (next, next->done) : o->done;
  return keep > o->lo ? keep : o->lo;
}

static rows_in
input_of (const ae_rowstream *r, int i, const float *frame)
{
  if (i == 0)
    return (rows_in) { frame, 0, (size_t) r->h * r->w, (size_t) r->w };
  const op *prev = &r->ops[i - 1];
  size_t rs = (size_t) prev->out[2];
  return (rows_in) { prev->buf, prev->first, (size_t) prev->cap * rs, rs };
}

static rows_out
output_of (const ae_rowstream *r, int i, float *frame)
{
  const op *o = &r->ops[i];
  size_t rs = (size_t) o->out[2];
  if (i == r->count - 1)
    return (rows_out) { frame, 0, (size_t) o->out[1] * rs, rs };
  return (rows_out) { o->buf, o->first, (size_t) o->cap * rs, rs };
}

/* Output (c, y, x) = input channel c * s * s + (y % s) * s + x % s at (y / s, x / s). */
static void
shuffle_rows (const op *o, const rows_in *x, const rows_out *y, int y0, int y1)
{
  int s = o->l->s, w = o->out[2], iw = o->in[2];
  for (int c = 0; c < o->out[0]; c++)
    for (int row = y0; row < y1; row++) {
      float *dst = y->data + c * y->cs + (size_t) (row - y->first) * y->rs;
      const float *src = x->data + (size_t) (c * s * s + (row % s) * s) * x->cs
                         + (size_t) (row / s - x->first) * x->rs;
      if (s == 2) { /* the denoisers': two rows zipped, a loop the compiler vectorises */
        const float *even = src, *odd = src + x->cs;
        for (int i = 0; i < iw; i++) {
          dst[2 * i] = even[i];
          dst[2 * i + 1] = odd[i];
        }
        continue;
      }
      for (int j = 0; j < s; j++)
        for (int col = j; col < w; col += s)
          dst[col] = src[j * x->cs + col / s];
    }
}

/* Computes rows [y0, y1) of op i. */
static void
run_op (ae_rowstream *r, int i, const rows_in *x, const rows_out *y, int y0, int y1)
{
  op *o = &r->ops[i];
  const ae_model *m = r->m;
  const float *bias = o->noise ? o->bias : m->params + o->l->b_off;
  size_t n = (size_t) (y1 - y0) * o->out[2];
  if (o->kind == OP_WINO) {
    const float *packed = layer_wino_weights (m, o->l, &o->pack, &o->wg);
    ae_wino_conv_rows (&o->wg, packed, bias, o->act_a, o->act_b, x, y, y0, y1, r->scratch);
  } else if (o->kind == OP_DIRECT) {
    ae_direct_conv_rows (&o->cg, o->out[0], m->params + o->l->w_off, bias, o->act_a, o->act_b, x,
                         y, y0, y1, r->scratch);
  } else if (o->kind == OP_SHUFFLE) {
    shuffle_rows (o, x, y, y0, y1);
  } else {
    for (int c = 0; c < o->out[0]; c++)
      memcpy (y->data + c * y->cs + (size_t) (y0 - y->first) * y->rs,
              x->data + c * x->cs + (size_t) (y0 - x->first) * x->rs, n * sizeof (float));
  }
  for (int c = 0; o->post != AE_ACT_LINEAR && c < o->out[0]; c++)
    act_forward (o->post, o->l->alpha, y->data + c * y->cs + (size_t) (y0 - y->first) * y->rs, n);
}

/* Moves op i's rows still needed to the top of its window when rows up to
 * `need` would not fit; returns the rows the window then has to hold. */
static int
make_room (ae_rowstream *r, int i, int need, int move)
{
  op *o = &r->ops[i];
  int keep = still_needed (r, i);
  if (move && need - o->first > o->cap) {
    size_t rs = (size_t) o->out[2], plane = (size_t) o->cap * rs;
    for (int c = 0; c < o->out[0]; c++)
      memmove (o->buf + c * plane, o->buf + c * plane + (size_t) (keep - o->first) * rs,
               (size_t) (o->done - keep) * rs * sizeof (float));
    o->first = keep;
  }
  return need - keep;
}

/* One pass down the frame. With in NULL (planning), computes nothing and
 * sets each window's capacity to the most rows it has to hold. */
static void
walk (ae_rowstream *r, const float *in, float *out, ae_rows_fn after, void *ctx)
{
  int *need = r->need;
  for (int i = 0; i < r->count; i++) {
    r->ops[i].done = r->ops[i].first = r->ops[i].lo;
    if (r->ops[i].noise && in)
      layer_fold_noise (r->m, r->ops[i].l, r->ops[i].noise, r->sigma, r->ops[i].bias);
  }
  const op *last = &r->ops[r->count - 1];
  for (int target = last->lo; target < last->hi;) {
    target = target + r->chunk < last->hi ? target + r->chunk : last->hi;
    rows_needed (r, target, need);
    for (int i = 0; i < r->count; i++) {
      op *o = &r->ops[i];
      if (need[i] <= o->done)
        continue;
      if (i < r->count - 1) {
        int rows = make_room (r, i, need[i], in != NULL);
        if (!in && rows > o->cap)
          o->cap = rows;
      }
      if (in) {
        rows_in x = input_of (r, i, in);
        rows_out y = output_of (r, i, out);
        run_op (r, i, &x, &y, o->done, need[i]);
      }
      if (i == r->count - 1 && after)
        after (ctx, o->done, need[i]);
      o->done = need[i];
    }
  }
}

/* Rows per step: the largest op's step within AE_STREAM_STEP_FLOATS, in
 * multiples of 4 rows of every op (Winograd tiles). */
static int
planned_chunk (const ae_rowstream *r)
{
  const op *last = &r->ops[r->count - 1];
  double largest = 0; /* floats per row of the last op */
  int mult = 4;
  for (int i = 0; i < r->count; i++) {
    const op *o = &r->ops[i];
    double scale = (double) o->out[1] / last->out[1];
    double floats = scale * o->out[0] * o->out[2];
    largest = floats > largest ? floats : largest;
    int per = (int) (4.0 / scale + 0.5); /* last-op rows per 4 rows of this op */
    mult = per > mult ? per : mult;
  }
  int rows = (int) (AE_STREAM_STEP_FLOATS / largest) / mult * mult;
  return rows > mult ? rows : mult;
}

static ae_status
allocate (ae_rowstream *r, ae_error *err)
{
  size_t scratch = 0;
  for (int i = 0; i < r->count; i++) {
    op *o = &r->ops[i];
    size_t need = 0;
    if (o->kind == OP_WINO) {
      need = ae_wino_scratch (&o->wg);
      if (!(o->pack.w = malloc (ae_wino_packed_floats (&o->wg) * sizeof (float))))
        return ae_fail (err, AE_E_NOMEM, "out of memory for a row stream");
    } else if (o->kind == OP_DIRECT) {
      need = ae_direct_conv_scratch (&o->cg);
    }
    scratch = need > scratch ? need : scratch;
    if (o->noise && !(o->bias = malloc ((size_t) o->out[0] * sizeof (float))))
      return ae_fail (err, AE_E_NOMEM, "out of memory for a row stream");
    if (o->cap < 1)
      o->cap = 1;
    if (i < r->count - 1
        && !(o->buf = malloc ((size_t) o->out[0] * o->cap * o->out[2] * sizeof (float))))
      return ae_fail (err, AE_E_NOMEM, "out of memory for a row stream");
  }
  if (!(r->scratch = malloc ((scratch ? scratch : 1) * sizeof (float))))
    return ae_fail (err, AE_E_NOMEM, "out of memory for a row stream");
  return AE_OK;
}

ae_rowstream *
ae_rowstream_new (const ae_model *m, int h, int w, int y0, int y1, int chunk, ae_error *err)
{
  ae_rowstream *r = calloc (1, sizeof *r);
  if (!r || !(r->ops = calloc ((size_t) m->nlayers, sizeof *r->ops))) {
    free (r);
    ae_fail (err, AE_E_NOMEM, "out of memory");
    return NULL;
  }
  r->m = m;
  r->h = h;
  r->w = w;
  r->count = build_ops (m, h, w, r->ops);
  if (r->count > 0 && !(r->need = calloc ((size_t) r->count, sizeof *r->need))) {
    ae_rowstream_free (r);
    ae_fail (err, AE_E_NOMEM, "out of memory");
    return NULL;
  }
  if (r->count == 0 || y0 < 0 || y1 > r->ops[r->count - 1].out[1] || y0 >= y1) {
    ae_rowstream_free (r);
    ae_fail (err, AE_E_ARG, "this model does not run as a row stream on %dx%d rows %d-%d", w, h,
             y0, y1);
    return NULL;
  }
  plan_rows (r, y0, y1);
  r->chunk = chunk > 0 ? chunk : planned_chunk (r);
  walk (r, NULL, NULL, NULL, NULL);
  if (allocate (r, err) != AE_OK) {
    ae_rowstream_free (r);
    return NULL;
  }
  return r;
}

void
ae_rowstream_set_noise (ae_rowstream *r, float sigma)
{
  r->sigma = sigma;
}

int
ae_rowstream_chunk (const ae_rowstream *r)
{
  return r->chunk;
}

void
ae_rowstream_run (ae_rowstream *r, const float *in, float *out, ae_rows_fn after, void *ctx)
{
  walk (r, in, out, after, ctx);
}

void
ae_rowstream_free (ae_rowstream *r)
{
  if (!r)
    return;
  for (int i = 0; r->ops && i < r->count; i++) {
    free (r->ops[i].pack.w);
    free (r->ops[i].bias);
    free (r->ops[i].buf);
  }
  free (r->ops);
  free (r->need);
  free (r->scratch);
  free (r);
}
