// C interface to OpenCV's cv::DISOpticalFlow, which gocv v0.32.0 does not
// bind. Mats are passed as the cv::Mat pointers that gocv's Mat.Ptr returns.
#ifndef MEDVSEG_SEGMENT_DIS_H
#define MEDVSEG_SEGMENT_DIS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef void *DISFlowHandle;

// dis_new creates a DIS instance with one of the cv::DISOpticalFlow::PRESET_*
// values. On failure it returns NULL and sets *err to a message that the
// caller frees.
DISFlowHandle dis_new(int preset, char **err);

// dis_calc computes the flow from grey image `from` to grey image `to` into
// flow (CV_32FC2). It returns NULL, or a message that the caller frees.
char *dis_calc(DISFlowHandle h, void *from, void *to, void *flow);

// dis_close releases an instance created by dis_new.
void dis_close(DISFlowHandle h);

#ifdef __cplusplus
}
#endif

#endif
