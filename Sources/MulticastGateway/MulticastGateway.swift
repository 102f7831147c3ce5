// MulticastGateway: the fence_xvm / fence_virt wire protocol front end (multicast and TCP listeners).
//
// Empty until the multicast gateway issue lands; the target exists so the package layout and the
// dependency direction (front end → FenceCore) are fixed from the start.
import FenceCore
