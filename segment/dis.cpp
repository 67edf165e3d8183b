#include <cstdlib>
#include <cstring>
#include <exception>

#include <opencv2/core.hpp>
#include <opencv2/video/tracking.hpp>

#include "dis.h"

namespace {

struct DISFlow {
    cv::Ptr<cv::DISOpticalFlow> algorithm;
};

char *copyMessage(const char *message) {
    size_t n = std::strlen(message) + 1;
    char *copy = static_cast<char *>(std::malloc(n));
    if (copy != nullptr) {
        std::memcpy(copy, message, n);
    }
    return copy;
}

}  // namespace

DISFlowHandle dis_new(int preset, char **err) {
    try {
        DISFlow *h = new DISFlow;
        h->algorithm = cv::DISOpticalFlow::create(preset);
        return h;
    } catch (const std::exception &e) {
        *err = copyMessage(e.what());
    } catch (...) {
        *err = copyMessage("unknown C++ exception");
    }
    return nullptr;
}

char *dis_calc(DISFlowHandle h, void *from, void *to, void *flow) {
    try {
        static_cast<DISFlow *>(h)->algorithm->calc(
            *static_cast<cv::Mat *>(from), *static_cast<cv::Mat *>(to), *static_cast<cv::Mat *>(flow));
        return nullptr;
    } catch (const std::exception &e) {
        return copyMessage(e.what());
    } catch (...) {
        return copyMessage("unknown C++ exception");
    }
}

void dis_close(DISFlowHandle h) {
    delete static_cast<DISFlow *>(h);
}
