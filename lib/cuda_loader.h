/* cuda_loader.h — finds and loads the CUDA backend, a shared library
 * (librevela-cuda.so, built from kernels/ where nvcc exists), on the first
 * `--device cuda`. The tools link nothing of CUDA: they start in a
 * millisecond, run on machines without the CUDA libraries, and one binary
 * serves CPU and GPU users. The backend's own calls into librevela (errors,
 * weights, tokenizer) resolve against the tool, which exports its symbols
 * (linked with -rdynamic).
 *
 * Where it looks, first match wins:
 *   $RV_CUDA_LIB                       (a path; tests point it at the emulated backend)
 *   <tool's directory>/librevela-cuda.so                 (the build tree: bin/)
 *   <tool's directory>/../lib/revela/librevela-cuda.so   (make install)
 * Entry points are plain C functions of the backend, looked up by name. */
#ifndef RV_CUDA_LOADER_H
#define RV_CUDA_LOADER_H

/* Loads the backend once (later calls return the first result): 0, or -1
 * with an error naming every path tried and why each failed. */
int rv_cuda_backend_load(void);

/* The backend's function `name` (loading it first): NULL with an error when
 * the backend is missing or lacks it (an older backend next to a newer tool). */
void *rv_cuda_backend_sym(const char *name);

/* The path the backend was loaded from ("" before a successful load). */
const char *rv_cuda_backend_path(void);

#endif
