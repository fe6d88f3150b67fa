package bench

import "time"

// opTimeout bounds one API operation; it only catches a hang.
const opTimeout = 2 * time.Minute
