/*
 * fuzz: helpers shared by the libFuzzer targets.  Everything here is
 * deterministic: split points and choices come from the input (through a
 * small PRNG seeded by it), never from time or addresses, so that a crash
 * reproduces from its file alone.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * FUZZ_CHECK(cond): an invariant of the code under test.  abort() so that
 * libFuzzer records the input as a crash, with the failed condition.
 */
#define FUZZ_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: invariant failed: %s\n",	\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

/* A cursor over the fuzz input; reads past the end return zeros. */
struct fuzz_in {
	const uint8_t	*p;
	size_t		 n;
	size_t		 off;
};

static inline void
fuzz_in_init(struct fuzz_in *in, const uint8_t *p, size_t n)
{
	in->p = p;
	in->n = n;
	in->off = 0;
}

static inline uint8_t
fuzz_byte(struct fuzz_in *in)
{
	return (in->off < in->n ? in->p[in->off++] : 0);
}

static inline uint16_t
fuzz_u16(struct fuzz_in *in)
{
	uint16_t	 v = fuzz_byte(in);

	return ((uint16_t)(v << 8 | fuzz_byte(in)));
}

static inline size_t
fuzz_left(const struct fuzz_in *in)
{
	return (in->n - in->off);
}

/* Take up to ${want} bytes; returns how many were taken. */
static inline size_t
fuzz_take(struct fuzz_in *in, size_t want, const uint8_t **p)
{
	size_t	 n = fuzz_left(in) < want ? fuzz_left(in) : want;

	*p = in->p + in->off;
	in->off += n;
	return (n);
}

/* xorshift32: cheap, and seeded from the input it is reproducible. */
struct fuzz_rng {
	uint32_t	 s;
};

static inline void
fuzz_rng_init(struct fuzz_rng *r, uint32_t seed)
{
	r->s = seed != 0 ? seed : 0x9e3779b9u;
}

static inline uint32_t
fuzz_rng_next(struct fuzz_rng *r)
{
	uint32_t	 x = r->s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return (r->s = x);
}

/*
 * A chunk length for feeding a stream: mostly small (1..16 bytes, so
 * that headers and lengths are split), sometimes large.
 */
static inline size_t
fuzz_rng_chunk(struct fuzz_rng *r)
{
	uint32_t	 x = fuzz_rng_next(r);

	switch (x & 3) {
	case 0:
		return (1);
	case 1:
	case 2:
		return (1 + ((x >> 2) & 15));
	default:
		return (1 + ((x >> 2) & 4095));
	}
}

/* malloc() that the targets may treat as infallible. */
static inline void *
fuzz_malloc(size_t n)
{
	void	*p = malloc(n != 0 ? n : 1);

	if (p == NULL)
		abort();
	return (p);
}

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int	LLVMFuzzerInitialize(int *, char ***);

#endif /* !FUZZ_H */
