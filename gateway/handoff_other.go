//go:build !unix

package gateway

import "errors"

// ServeHandoff needs descriptor passing, which this system lacks; tf has
// no sandbox here either.
func (g *Gateway) ServeHandoff(string) error {
	return errors.New("handing a listener over is not supported on this system")
}
