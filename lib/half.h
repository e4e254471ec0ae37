/* half.h — IEEE binary16 and bfloat16 <-> float conversion (round to nearest
 * even, NaN preserved as a quiet NaN, subnormals exact). */
#ifndef RV_HALF_H
#define RV_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t rv_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float rv_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float rv_bf16_to_f32(uint16_t h) { return rv_bits_f32((uint32_t)h << 16); }

static inline uint16_t rv_f32_to_bf16(float f)
{
    uint32_t u = rv_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)          /* NaN: keep sign, force quiet */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);              /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static inline float rv_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f)                               /* inf / NaN */
        return rv_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return rv_bits_f32(sign);
        float v = (float)man * (1.0f / 16777216.0f);   /* man * 2^-24 */
        return sign ? -v : v;
    }
    return rv_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t rv_f32_to_f16(float f)
{
    uint32_t u = rv_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)                           /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u)                          /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {                         /* below 2^-14: subnormal or zero */
        float v = rv_bits_f32(a) * 16777216.0f;    /* exact scaling by 2^24 */
        /* nearbyint-style round half to even on the integer mantissa */
        uint32_t m = (uint32_t)v;
        float frac = v - (float)m;
        if (frac > 0.5f || (frac == 0.5f && (m & 1u)))
            m++;
        return (uint16_t)(sign | m);
    }
    uint32_t exp = (a >> 23) - 112u, man = a & 0x7fffffu;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;                                       /* may carry into the exponent: correct */
    return (uint16_t)(sign | h);
}

#endif
