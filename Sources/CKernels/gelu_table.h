// The coefficient table of the vectorised exact GELU (gelu_table.c). Internal to CKernels.
#ifndef CNX_GELU_TABLE_H
#define CNX_GELU_TABLE_H

/// Row j: the u^j coefficients of the 16 intervals of [0, 6) (NEON). 64-byte aligned.
extern const float cnx_gelu_q16[6][16];
/// Row j: the u^j coefficients of the 32 intervals of [0, 6) (AVX-512). 64-byte aligned.
extern const float cnx_gelu_q32[5][32];

#endif
