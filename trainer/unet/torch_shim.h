// C interface of the U-Net shim over libtorch's C++ API (torch_shim.cpp).
// Every function that can fail returns NULL on success or an error message
// allocated with malloc, which the caller frees. No C++ exception crosses
// this interface.
#ifndef MEDVSEG_TORCH_SHIM_H
#define MEDVSEG_TORCH_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ms_unet ms_unet;

// Loss weights and the four loss values: total, BCE, soft Dice, boundary.
enum { MS_LOSS_TOTAL, MS_LOSS_BCE, MS_LOSS_DICE, MS_LOSS_BOUNDARY, MS_LOSS_PARTS };

char *ms_unet_new(const int64_t *channels, int levels, uint64_t random_seed, int threads,
                  double learning_rate, double weight_decay, ms_unet **out);
void ms_unet_free(ms_unet *m);

// images: n x 3 x h x w, masks: n x 1 x h x w with values 0 or 1.
// weights: BCE, Dice and boundary weights. parts: MS_LOSS_PARTS floats.
char *ms_unet_train_step(ms_unet *m, const float *images, const float *masks, int64_t n,
                         int64_t h, int64_t w, const float *weights, float *parts,
                         float *batch_dice);

// Evaluation-mode forward pass into logits (n x 1 x h x w). When masks is
// not NULL, parts receives the loss against them.
char *ms_unet_forward(ms_unet *m, const float *images, const float *masks, int64_t n,
                      int64_t h, int64_t w, const float *weights, float *logits, float *parts);

char *ms_unet_set_learning_rate(ms_unet *m, double learning_rate);
int ms_unet_threads(ms_unet *m);

// The tensor table: parameters in registration order, then buffers.
int ms_unet_tensor_count(ms_unet *m);
// name stays valid until ms_unet_free. dims holds up to 8 sizes.
char *ms_unet_tensor_info(ms_unet *m, int index, const char **name, int64_t *dims, int *ndim,
                          int *is_buffer);
char *ms_unet_tensor_read(ms_unet *m, int index, float *out, int64_t numel);
char *ms_unet_tensor_write(ms_unet *m, int index, const float *in, int64_t numel);

// AdamW moments of parameter `index`; *present is 0 before its first step.
char *ms_unet_adamw_read(ms_unet *m, int index, float *exp_avg, float *exp_avg_sq,
                         int64_t numel, int64_t *step, int *present);
char *ms_unet_adamw_write(ms_unet *m, int index, const float *exp_avg, const float *exp_avg_sq,
                          int64_t numel, int64_t step);

#ifdef __cplusplus
}
#endif

#endif
