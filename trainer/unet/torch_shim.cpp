// U-Net, loss and AdamW training step on libtorch's stable C++ API
// (torch::nn, torch::optim), behind the C interface in torch_shim.h.
#include "torch_shim.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

namespace {

namespace nn = torch::nn;

// Two 3x3 convolutions, each followed by batch norm and ReLU. The
// convolutions have no bias because batch norm's shift replaces it.
struct ConvBlockImpl : nn::Module {
  ConvBlockImpl(int64_t in, int64_t out)
      : conv1(nn::Conv2dOptions(in, out, 3).padding(1).bias(false)),
        bn1(nn::BatchNorm2dOptions(out)),
        conv2(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)),
        bn2(nn::BatchNorm2dOptions(out)) {
    register_module("conv1", conv1);
    register_module("bn1", bn1);
    register_module("conv2", conv2);
    register_module("bn2", bn2);
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn1->forward(conv1->forward(x)));
    return torch::relu(bn2->forward(conv2->forward(x)));
  }

  nn::Conv2d conv1;
  nn::BatchNorm2d bn1;
  nn::Conv2d conv2;
  nn::BatchNorm2d bn2;
};
TORCH_MODULE(ConvBlock);

struct UNetImpl : nn::Module {
  explicit UNetImpl(const std::vector<int64_t> &channels) {
    int64_t in = 3;
    for (size_t i = 0; i < channels.size(); i++) {
      enc.push_back(register_module("enc" + std::to_string(i + 1), ConvBlock(in, channels[i])));
      in = channels[i];
    }

    // Decoders run from the deepest level up; dec[i] works at the
    // resolution of enc[i].
    dec.resize(channels.size() - 1, nullptr);
    for (size_t i = channels.size() - 1; i-- > 0;) {
      dec[i] = register_module("dec" + std::to_string(i + 1),
                               ConvBlock(channels[i + 1] + channels[i], channels[i]));
    }
    head = register_module("head", nn::Conv2d(nn::Conv2dOptions(channels[0], 1, 1)));
  }

  torch::Tensor forward(torch::Tensor x) {
    std::vector<torch::Tensor> skips;
    for (size_t i = 0; i < enc.size(); i++) {
      if (i > 0) {
        x = torch::max_pool2d(x, {2, 2});
      }
      x = enc[i]->forward(x);
      skips.push_back(x);
    }

    namespace F = torch::nn::functional;
    for (size_t i = dec.size(); i-- > 0;) {
      const auto &skip = skips[i];
      x = F::interpolate(x, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{skip.size(2), skip.size(3)})
                                .mode(torch::kBilinear)
                                .align_corners(false));
      x = dec[i]->forward(torch::cat({x, skip}, 1));
    }
    return head->forward(x);
  }

  std::vector<ConvBlock> enc;
  std::vector<ConvBlock> dec;
  nn::Conv2d head{nullptr};
};
TORCH_MODULE(UNet);

// Radius in pixels of the band around the ground-truth boundary where the
// boundary term averages the BCE.
constexpr int64_t kBoundaryRadius = 2;

struct Loss {
  torch::Tensor total, bce, dice, boundary;
};

Loss compute_loss(const torch::Tensor &logits, const torch::Tensor &target, const float *weights) {
  Loss loss;
  auto bce_map = torch::binary_cross_entropy_with_logits(logits, target, {}, {},
                                                         at::Reduction::None);
  loss.bce = bce_map.mean();

  // Soft Dice per image with smoothing 1, so an empty ground truth is a
  // target for an empty prediction instead of a division by zero.
  auto prob = torch::sigmoid(logits);
  auto intersection = (prob * target).sum({1, 2, 3});
  auto sums = prob.sum({1, 2, 3}) + target.sum({1, 2, 3});
  loss.dice = (1 - (2 * intersection + 1) / (sums + 1)).mean();

  // The band is dilation minus erosion of the mask, both by max-pooling. The
  // -inf padding of max_pool2d keeps the image border out of the band.
  const int64_t k = 2 * kBoundaryRadius + 1;
  auto dilated = torch::max_pool2d(target, {k, k}, {1, 1}, {kBoundaryRadius, kBoundaryRadius});
  auto eroded = -torch::max_pool2d(-target, {k, k}, {1, 1}, {kBoundaryRadius, kBoundaryRadius});
  auto band = dilated - eroded;
  loss.boundary = (bce_map * band).sum() / band.sum().clamp_min(1);

  loss.total = weights[0] * loss.bce + weights[1] * loss.dice + weights[2] * loss.boundary;
  return loss;
}

void store_loss(const Loss &loss, float *parts) {
  parts[MS_LOSS_TOTAL] = loss.total.item<float>();
  parts[MS_LOSS_BCE] = loss.bce.item<float>();
  parts[MS_LOSS_DICE] = loss.dice.item<float>();
  parts[MS_LOSS_BOUNDARY] = loss.boundary.item<float>();
}

// Hard Dice of logits > 0 over the whole batch; 1 when both are empty.
float batch_dice(const torch::Tensor &logits, const torch::Tensor &target) {
  auto predicted = (logits > 0).to(torch::kFloat32);
  float sums = (predicted.sum() + target.sum()).item<float>();
  if (sums == 0) {
    return 1;
  }
  return 2 * (predicted * target).sum().item<float>() / sums;
}

char *error_string(const std::string &message) {
  char *out = static_cast<char *>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

// guard runs f and turns any exception into an error string.
template <typename F> char *guard(F &&f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error &e) {
    return error_string(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return error_string(e.what());
  } catch (...) {
    return error_string("unknown C++ exception in libtorch");
  }
}

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;
  bool is_buffer;
};

} // namespace

struct ms_unet {
  UNet model{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::vector<NamedTensor> tensors;
  size_t parameter_count = 0;
  int threads = 1;

  // OpenMP keeps the thread count per calling thread. The Go side makes all
  // calls from one locked OS thread, and every compute call sets the count
  // again, so it holds even for a caller that does not.
  void use_threads() const { at::set_num_threads(threads); }
};

namespace {

torch::Tensor input_tensor(const float *data, int64_t n, int64_t c, int64_t h, int64_t w) {
  return torch::from_blob(const_cast<float *>(data), {n, c, h, w}, torch::kFloat32);
}

const NamedTensor &tensor_at(const ms_unet *m, int index) {
  if (index < 0 || static_cast<size_t>(index) >= m->tensors.size()) {
    throw std::out_of_range("tensor index " + std::to_string(index) + " out of range [0, " +
                            std::to_string(m->tensors.size()) + ")");
  }
  return m->tensors[index];
}

void check_numel(const NamedTensor &t, int64_t numel) {
  if (t.tensor.numel() != numel) {
    throw std::invalid_argument(t.name + " has " + std::to_string(t.tensor.numel()) +
                                " elements, buffer has " + std::to_string(numel));
  }
}

std::string state_key(const torch::Tensor &p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}

} // namespace

extern "C" {

char *ms_unet_new(const int64_t *channels, int levels, uint64_t random_seed, int threads,
                  double learning_rate, double weight_decay, ms_unet **out) {
  *out = nullptr;
  return guard([&] {
    auto m = std::make_unique<ms_unet>();
    m->threads = threads;
    m->use_threads();
    torch::manual_seed(random_seed);
    m->model = UNet(std::vector<int64_t>(channels, channels + levels));

    for (const auto &p : m->model->named_parameters()) {
      m->tensors.push_back({p.key(), p.value(), false});
    }
    m->parameter_count = m->tensors.size();
    for (const auto &b : m->model->named_buffers()) {
      m->tensors.push_back({b.key(), b.value(), true});
    }

    m->optimizer = std::make_unique<torch::optim::AdamW>(
        m->model->parameters(),
        torch::optim::AdamWOptions(learning_rate).weight_decay(weight_decay));
    *out = m.release();
  });
}

void ms_unet_free(ms_unet *m) { delete m; }

char *ms_unet_train_step(ms_unet *m, const float *images, const float *masks, int64_t n,
                         int64_t h, int64_t w, const float *weights, float *parts,
                         float *dice) {
  return guard([&] {
    m->use_threads();
    m->model->train();
    auto x = input_tensor(images, n, 3, h, w);
    auto y = input_tensor(masks, n, 1, h, w);

    m->optimizer->zero_grad();
    auto logits = m->model->forward(x);
    auto loss = compute_loss(logits, y, weights);
    loss.total.backward();
    m->optimizer->step();

    torch::NoGradGuard no_grad;
    store_loss(loss, parts);
    *dice = batch_dice(logits.detach(), y);
  });
}

char *ms_unet_forward(ms_unet *m, const float *images, const float *masks, int64_t n,
                      int64_t h, int64_t w, const float *weights, float *logits, float *parts) {
  return guard([&] {
    m->use_threads();
    torch::NoGradGuard no_grad;
    m->model->eval();
    auto out = m->model->forward(input_tensor(images, n, 3, h, w)).contiguous();
    std::memcpy(logits, out.data_ptr<float>(), out.numel() * sizeof(float));

    if (masks != nullptr) {
      store_loss(compute_loss(out, input_tensor(masks, n, 1, h, w), weights), parts);
    }
  });
}

char *ms_unet_set_learning_rate(ms_unet *m, double learning_rate) {
  return guard([&] {
    for (auto &group : m->optimizer->param_groups()) {
      static_cast<torch::optim::AdamWOptions &>(group.options()).lr(learning_rate);
    }
  });
}

int ms_unet_threads(ms_unet *m) {
  m->use_threads();
  return at::get_num_threads();
}

int ms_unet_tensor_count(ms_unet *m) { return static_cast<int>(m->tensors.size()); }

char *ms_unet_tensor_info(ms_unet *m, int index, const char **name, int64_t *dims, int *ndim,
                          int *is_buffer) {
  return guard([&] {
    const auto &t = tensor_at(m, index);
    if (t.tensor.dim() > 8) {
      throw std::length_error(t.name + " has more than 8 dimensions");
    }
    *name = t.name.c_str();
    *ndim = static_cast<int>(t.tensor.dim());
    for (int64_t i = 0; i < t.tensor.dim(); i++) {
      dims[i] = t.tensor.size(i);
    }
    *is_buffer = t.is_buffer ? 1 : 0;
  });
}

char *ms_unet_tensor_read(ms_unet *m, int index, float *out, int64_t numel) {
  return guard([&] {
    const auto &t = tensor_at(m, index);
    check_numel(t, numel);
    auto values = t.tensor.detach().to(torch::kFloat32).contiguous();
    std::memcpy(out, values.data_ptr<float>(), numel * sizeof(float));
  });
}

char *ms_unet_tensor_write(ms_unet *m, int index, const float *in, int64_t numel) {
  return guard([&] {
    const auto &t = tensor_at(m, index);
    check_numel(t, numel);
    torch::NoGradGuard no_grad;
    auto source = torch::from_blob(const_cast<float *>(in), t.tensor.sizes(), torch::kFloat32);
    if (t.tensor.scalar_type() == torch::kFloat32) {
      t.tensor.copy_(source);
    } else {
      // num_batches_tracked is int64: round instead of truncating.
      t.tensor.copy_(source.round());
    }
  });
}

char *ms_unet_adamw_read(ms_unet *m, int index, float *exp_avg, float *exp_avg_sq,
                         int64_t numel, int64_t *step, int *present) {
  return guard([&] {
    const auto &t = tensor_at(m, index);
    if (t.is_buffer) {
      throw std::invalid_argument(t.name + " is a buffer and has no optimizer state");
    }
    check_numel(t, numel);
    *present = 0;
    auto &state = m->optimizer->state();
    auto it = state.find(state_key(t.tensor));
    if (it == state.end()) {
      return;
    }

    auto &s = static_cast<torch::optim::AdamWParamState &>(*it->second);
    std::memcpy(exp_avg, s.exp_avg().contiguous().data_ptr<float>(), numel * sizeof(float));
    std::memcpy(exp_avg_sq, s.exp_avg_sq().contiguous().data_ptr<float>(),
                numel * sizeof(float));
    *step = s.step();
    *present = 1;
  });
}

char *ms_unet_adamw_write(ms_unet *m, int index, const float *exp_avg, const float *exp_avg_sq,
                          int64_t numel, int64_t step) {
  return guard([&] {
    const auto &t = tensor_at(m, index);
    if (t.is_buffer) {
      throw std::invalid_argument(t.name + " is a buffer and has no optimizer state");
    }
    check_numel(t, numel);
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(step);
    s->exp_avg(torch::from_blob(const_cast<float *>(exp_avg), t.tensor.sizes(), torch::kFloat32)
                   .clone());
    s->exp_avg_sq(
        torch::from_blob(const_cast<float *>(exp_avg_sq), t.tensor.sizes(), torch::kFloat32)
            .clone());
    m->optimizer->state()[state_key(t.tensor)] = std::move(s);
  });
}

} // extern "C"
