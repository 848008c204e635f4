// Interop backend: Go gorilla/websocket, hub-style (gorilla's chat example shape:
// a Hub goroutine owning the clients, a readPump and a writePump per client).
//
// Usage: go_hub --port PORT --name NAME
//
//   - /chat: the chat hub. Every message is broadcast to every client of this hub;
//     each client is first greeted with "welcome:NAME".
//   - any other path: the command protocol of tests/interop/README.md.
//
// Built offline from Debian's golang-github-gorilla-websocket-dev (GOPATH mode).
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

const (
	writeWait      = 10 * time.Second
	pongWait       = 120 * time.Second
	pingPeriod     = 100 * time.Second // keepalive, as in the chat example
	maxMessageSize = 64 << 20
	pingPayload    = "ping-b2c"
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:    4096,
	WriteBufferSize:   4096,
	EnableCompression: true,
	Subprotocols:      []string{"chat"},
	// The browser page is served from another origin; wsgate (or nobody) checks it.
	CheckOrigin: func(r *http.Request) bool { return true },
}

// outgoing is what a writePump writes: a data message, or a special action.
type outgoing struct {
	kind   string // "data", "fragment", "ping", "close"
	typ    int
	data   []byte
	code   int
	reason string
}

// Hub maintains the set of active chat clients and broadcasts to them.
type Hub struct {
	name       string
	clients    map[*Client]bool
	broadcast  chan outgoing
	register   chan *Client
	unregister chan *Client
}

func newHub(name string) *Hub {
	return &Hub{name: name, clients: map[*Client]bool{}, broadcast: make(chan outgoing),
		register: make(chan *Client), unregister: make(chan *Client)}
}

func (h *Hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = true
		case c := <-h.unregister:
			if _, ok := h.clients[c]; ok {
				delete(h.clients, c)
				close(c.send)
			}
		case m := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- m:
				default:
					close(c.send)
					delete(h.clients, c)
				}
			}
		}
	}
}

// Client is a middleman between the websocket connection and the hub (or, for the
// command protocol, itself).
type Client struct {
	hub  *Hub // nil: command protocol
	name string
	conn *websocket.Conn
	ext  string
	send chan outgoing
}

func (c *Client) readPump() {
	defer func() {
		if c.hub != nil {
			c.hub.unregister <- c
		} else {
			close(c.send)
		}
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(appData string) error {
		c.conn.SetReadDeadline(time.Now().Add(pongWait))
		if c.hub == nil && appData == pingPayload {
			c.send <- outgoing{kind: "data", typ: websocket.TextMessage, data: []byte("pong-ok")}
		}
		return nil
	})
	for {
		typ, msg, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		if c.hub != nil {
			c.hub.broadcast <- outgoing{kind: "data", typ: typ, data: msg}
			continue
		}
		c.send <- c.command(typ, msg)
	}
}

// command turns one received message into what to send back.
func (c *Client) command(typ int, msg []byte) outgoing {
	text := string(msg)
	if typ != websocket.TextMessage || !strings.HasPrefix(text, "cmd:") {
		return outgoing{kind: "data", typ: typ, data: msg}
	}
	reply := func(s string) outgoing { return outgoing{kind: "data", typ: websocket.TextMessage, data: []byte(s)} }
	switch {
	case text == "cmd:who":
		return reply("who:" + c.name)
	case text == "cmd:ext":
		return reply("ext:" + c.ext)
	case text == "cmd:fragment":
		return outgoing{kind: "fragment"}
	case text == "cmd:ping":
		return outgoing{kind: "ping"}
	case strings.HasPrefix(text, "cmd:close:"):
		rest := strings.TrimPrefix(text, "cmd:close:")
		codeText, reason, _ := strings.Cut(rest, ":")
		code, err := strconv.Atoi(codeText)
		if err != nil {
			code = websocket.CloseNormalClosure
		}
		return outgoing{kind: "close", code: code, reason: reason}
	}
	return outgoing{kind: "data", typ: typ, data: msg}
}

func (c *Client) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case m, ok := <-c.send:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.write(m); err != nil {
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func (c *Client) write(m outgoing) error {
	switch m.kind {
	case "ping":
		return c.conn.WriteControl(websocket.PingMessage, []byte(pingPayload), time.Now().Add(writeWait))
	case "close":
		// The readPump sees the peer's answering Close and ends the connection.
		msg := websocket.FormatCloseMessage(m.code, m.reason)
		return c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeWait))
	case "fragment":
		// gorilla has no fragment API, but a server's message writer sends a write
		// larger than twice its buffer as a frame of its own (fin=0), and Close()
		// ends the message with the buffered rest: 3 frames. Compression is off for
		// this message, else the flate writer would decide the frame boundaries.
		c.conn.EnableWriteCompression(false)
		defer c.conn.EnableWriteCompression(true)
		w, err := c.conn.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		w.Write([]byte("frag1:" + strings.Repeat("x", 9994)))
		w.Write([]byte("frag2:" + strings.Repeat("x", 9994)))
		w.Write([]byte("frag3:" + strings.Repeat("x", 994)))
		return w.Close()
	}
	return c.conn.WriteMessage(m.typ, m.data)
}

// negotiatedExt is what gorilla's Upgrader answers (server.go): with
// EnableCompression, any offer of permessage-deflate gets this exact header.
func negotiatedExt(r *http.Request) string {
	for _, v := range r.Header.Values("Sec-Websocket-Extensions") {
		for _, e := range strings.Split(v, ",") {
			if name, _, _ := strings.Cut(strings.TrimSpace(e), ";"); strings.TrimSpace(name) == "permessage-deflate" {
				return "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
			}
		}
	}
	return ""
}

func serve(hub *Hub, name string, w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		log.Println("upgrade:", err)
		return
	}
	c := &Client{hub: hub, name: name, conn: conn, ext: negotiatedExt(r), send: make(chan outgoing, 256)}
	if hub != nil {
		hub.register <- c
		c.send <- outgoing{kind: "data", typ: websocket.TextMessage, data: []byte("welcome:" + name)}
	}
	go c.writePump()
	go c.readPump()
}

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1")
	name := flag.String("name", "", "name this backend answers to cmd:who")
	flag.Parse()
	if *port == 0 || *name == "" {
		log.Fatal("usage: go_hub --port PORT --name NAME")
	}
	hub := newHub(*name)
	go hub.run()
	mux := http.NewServeMux()
	mux.HandleFunc("/chat", func(w http.ResponseWriter, r *http.Request) { serve(hub, *name, w, r) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { serve(nil, *name, w, r) })
	addr := "127.0.0.1:" + strconv.Itoa(*port)
	log.Printf("go_hub %s on %s", *name, addr)
	log.Fatal(http.ListenAndServe(addr, mux))
}
