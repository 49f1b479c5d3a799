/* Tests for the motion-adaptive temporal blend (lib/temporal.c): exact
 * agreement with a plain re-implementation of the documented formula,
 * convergence on a static scene, no trail behind a moving edge, and row
 * ranges that split a frame. One line per check; exits non-zero on a
 * failure. */
#include "check.h"
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define W 64
#define H 48
#define N (W * H)
#define SIGMA (20.0f / 255.0f) /* the input noise the element would measure */
#define RESIDUAL (0.3f * SIGMA) /* what a spatial denoiser leaves of it */

/* The documented formula, pixel by pixel, with nothing shared with the
 * library: the 3x3 mean of |history - spatial| with edges repeated. */
static void
reference (const float *s, const float *h, float *out, int w, int ht, float strength,
           float sigma)
{
  sigma = sigma > 0.5f / 255.0f ? sigma : 0.5f / 255.0f;
  for (int y = 0; y < ht; y++)
    for (int x = 0; x < w; x++) {
      double sum = 0.0;
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          int yy = y + dy < 0 ? 0 : y + dy >= ht ? ht - 1 : y + dy;
          int xx = x + dx < 0 ? 0 : x + dx >= w ? w - 1 : x + dx;
          sum += fabs (h[yy * w + xx] - s[yy * w + xx]);
        }
      double m = sum / 9.0, g = (0.6 * sigma - m) / (0.35 * sigma);
      double k = strength * (g < 0.0 ? 0.0 : g > 1.0 ? 1.0 : g);
      out[y * w + x] = (float) (s[y * w + x] + k * (h[y * w + x] - s[y * w + x]));
    }
}

static float
max_diff (const float *a, const float *b, int n)
{
  float m = 0.0f;
  for (int i = 0; i < n; i++)
    m = fmaxf (m, fabsf (a[i] - b[i]));
  return m;
}

/* Root mean square of a - b over the pixels where mask is set (all: NULL). */
static double
rms (const float *a, const float *b, const unsigned char *mask, int n)
{
  double se = 0.0;
  int count = 0;
  for (int i = 0; i < n; i++)
    if (!mask || mask[i]) {
      se += (double) (a[i] - b[i]) * (a[i] - b[i]);
      count++;
    }
  return count ? sqrt (se / count) : 0.0;
}

/* A smooth scene in 0.25..0.75. */
static void
scene (float *dst)
{
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      dst[y * W + x] = 0.5f + 0.15f * sinf (x * 0.2f + y * 0.1f) + 0.1f * (x - W / 2) / W;
}

/* The scene with a bright bar from column `edge` on: a step edge. */
static void
scene_with_bar (float *dst, int edge)
{
  scene (dst);
  for (int y = 0; y < H; y++)
    for (int x = edge; x < edge + 12 && x < W; x++)
      dst[y * W + x] = 0.95f;
}

static void
add_residual (const float *clean, float *dst, int n, ae_rng *rng)
{
  for (int i = 0; i < n; i++)
    dst[i] = clean[i] + RESIDUAL * (float) ae_rng_normal (rng);
}

/* Random planes that agree in some areas and differ in others, against
 * the plain formula; the whole frame at once and split in row ranges
 * (including ranges that reach beyond the frame). */
static void
test_reference (void)
{
  static float s[N], h[N], out[N], split[N], want[N];
  ae_rng rng;
  ae_rng_seed (&rng, 1);
  for (int i = 0; i < N; i++) {
    s[i] = (float) ae_rng_uniform (&rng);
    float step = (i / W + i % W) % 16 < 8 ? 0.02f : 0.3f;
    h[i] = s[i] + step * (float) ae_rng_normal (&rng);
  }
  const float strengths[] = { 0.0f, 0.5f, 1.0f }, sigmas[] = { SIGMA, 0.0f, -1.0f, 0.2f };
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 4; b++) {
      reference (s, h, want, W, H, strengths[a], sigmas[b]);
      ae_temporal_blend_rows (s, h, out, W, H, strengths[a], sigmas[b], 0, H);
      float d = max_diff (out, want, N);
      CHECK (d < 1e-6f, "strength %.1f sigma %.3f: equals the formula (max diff %.2g)",
             strengths[a], sigmas[b], d);
    }
  reference (s, h, want, W, H, 0.8f, SIGMA);
  memset (split, 0, sizeof split);
  const int cuts[] = { -3, 1, 2, 9, 30, 47, H + 5 };
  for (int i = 0; i + 1 < 7; i++)
    ae_temporal_blend_rows (s, h, split, W, H, 0.8f, SIGMA, cuts[i], cuts[i + 1]);
  CHECK (max_diff (split, want, N) < 1e-6f, "row ranges together give the whole frame");
  ae_temporal_blend_rows (s, h, out, W, H, 0.0f, SIGMA, 0, H);
  CHECK (memcmp (out, s, sizeof s) == 0, "strength 0: the spatial plane, bit for bit");
  const int tiny[][2] = { { 1, 1 }, { 1, 5 }, { 5, 1 }, { 2, 2 } };
  for (int i = 0; i < 4; i++) {
    int w = tiny[i][0], ht = tiny[i][1];
    reference (s, h, want, w, ht, 0.7f, SIGMA);
    ae_temporal_blend_rows (s, h, out, w, ht, 0.7f, SIGMA, 0, ht);
    CHECK (max_diff (out, want, w * ht) < 1e-6f, "%dx%d plane equals the formula", w, ht);
  }
}

/* A static scene: each frame's spatial estimate has fresh residual noise,
 * the recursion averages it away. */
static void
test_static (void)
{
  static float clean[N], s[N], hist[N], out[N];
  ae_rng rng;
  ae_rng_seed (&rng, 2);
  scene (clean);
  add_residual (clean, hist, N, &rng);
  double first = rms (hist, clean, NULL, N), last = 0.0;
  for (int t = 1; t < 12; t++) {
    add_residual (clean, s, N, &rng);
    ae_temporal_blend_rows (s, hist, out, W, H, 0.8f, SIGMA, 0, H);
    memcpy (hist, out, sizeof out);
    last = rms (out, clean, NULL, N);
  }
  CHECK (last < 0.6 * first, "static scene, strength 0.8: RMS error %.2f -> %.2f levels after "
         "12 frames", 255 * first, 255 * last);
}

/* A bright bar moving 4 pixels a frame: around its edges the output is the
 * new frame (k = 0), so nothing of the old position stays; the still
 * background keeps being averaged. */
static void
test_moving_edge (void)
{
  static float clean[N], s[N], hist[N], out[N];
  static unsigned char moving[N], still[N];
  ae_rng rng;
  ae_rng_seed (&rng, 3);
  scene_with_bar (clean, 4);
  add_residual (clean, hist, N, &rng);
  double err_out = 0.0, err_s = 0.0, bg_out = 0.0, bg_s = 0.0;
  float exact = 0.0f;
  for (int t = 1; t < 8; t++) {
    int prev = 4 + 4 * (t - 1), edge = 4 + 4 * t;
    scene_with_bar (clean, edge);
    add_residual (clean, s, N, &rng);
    ae_temporal_blend_rows (s, hist, out, W, H, 0.8f, SIGMA, 0, H);
    /* Moving: every column the bar entered or left this frame. */
    for (int i = 0; i < N; i++) {
      int x = i % W;
      moving[i] = (x >= prev && x < edge) || (x >= prev + 12 && x < edge + 12);
      still[i] = x < prev - 3 || x > edge + 15;
      if (moving[i])
        exact = fmaxf (exact, fabsf (out[i] - s[i]));
    }
    err_out += rms (out, clean, moving, N);
    err_s += rms (s, clean, moving, N);
    bg_out += rms (out, clean, still, N);
    bg_s += rms (s, clean, still, N);
    memcpy (hist, out, sizeof out);
  }
  CHECK (exact == 0.0f, "moving bar: where it entered or left, the output is the new frame "
         "(max change %.2g)", exact);
  CHECK (err_out <= err_s * 1.001, "moving region: RMS error %.2f levels, spatial alone %.2f",
         255 * err_out / 7, 255 * err_s / 7);
  CHECK (bg_out < 0.8 * bg_s, "still background is still averaged: %.2f levels vs %.2f",
         255 * bg_out / 7, 255 * bg_s / 7);
}

int
main (void)
{
  test_reference ();
  test_static ();
  test_moving_edge ();
  return CHECK_DONE ();
}
