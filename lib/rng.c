/* Seeded random numbers: xoshiro256** (Blackman & Vigna), state expanded
 * from the seed with splitmix64. Each model initialiser and trainer owns its
 * generator, so equal seeds give equal models. */
#include "nn.h"

#include <math.h>

static uint64_t
splitmix64 (uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t
rotl (uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

void
ae_rng_seed (ae_rng *rng, uint64_t seed)
{
  for (int i = 0; i < 4; i++)
    rng->s[i] = splitmix64 (&seed);
  rng->has_spare = 0;
  rng->spare = 0;
}

uint64_t
ae_rng_next (ae_rng *rng)
{
  uint64_t *s = rng->s;
  uint64_t result = rotl (s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return result;
}

double
ae_rng_uniform (ae_rng *rng)
{
  return (ae_rng_next (rng) >> 11) * 0x1.0p-53;
}

/* Box-Muller; the second value of each pair is kept for the next call. */
double
ae_rng_normal (ae_rng *rng)
{
  if (rng->has_spare) {
    rng->has_spare = 0;
    return rng->spare;
  }
  double u1, u2;
  do
    u1 = ae_rng_uniform (rng);
  while (u1 <= 0.0);
  u2 = ae_rng_uniform (rng);
  double r = sqrt (-2.0 * log (u1));
  rng->spare = r * sin (2.0 * M_PI * u2);
  rng->has_spare = 1;
  return r * cos (2.0 * M_PI * u2);
}

/* Lemire's nearly-divisionless method would be faster; modulo bias is
 * negligible for the dataset sizes we shuffle (n << 2^64). */
size_t
ae_rng_below (ae_rng *rng, size_t n)
{
  return n ? (size_t) (ae_rng_next (rng) % n) : 0;
}

void
ae_rng_shuffle (ae_rng *rng, size_t *v, size_t n)
{
  for (size_t i = n; i > 1; i--) {
    size_t j = ae_rng_below (rng, i);
    size_t t = v[i - 1];
    v[i - 1] = v[j];
    v[j] = t;
  }
}
