/* splitmix.h — the splitmix64 generator (Steele, Lea, Flood 2014), the one
 * source of seeded randomness: counter-based draws (rv_mix64 of key + i:
 * LoRA init, dropout masks, --init weights) and sequential streams
 * (rv_splitmix64_next: shuffles, group sampling). Same results on every
 * machine and thread count. */
#ifndef RV_SPLITMIX_H
#define RV_SPLITMIX_H

#include <stdint.h>

/* splitmix64's output for state z: the golden-ratio step, then the finalizer. */
static inline uint64_t rv_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The next value of a sequential stream; advances *s. */
static inline uint64_t rv_splitmix64_next(uint64_t *s)
{
    uint64_t z = *s;
    *s += 0x9e3779b97f4a7c15ull;
    return rv_mix64(z);
}

#endif
