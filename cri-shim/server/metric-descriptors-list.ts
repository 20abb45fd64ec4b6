import type { ListMetricDescriptorsResponse } from '../../proto/gen/runtime/v1/api.js';
import { metricDescriptors } from '../metrics/descriptors.js';

// ListMetricDescriptors: kubelet asks once, when it builds its /metrics/cadvisor collector, and
// keeps the answer; the list is fixed (cri-shim/metrics/descriptors.ts).

export function listMetricDescriptors(): ListMetricDescriptorsResponse {
  return { descriptors: metricDescriptors as ListMetricDescriptorsResponse['descriptors'] };
}
